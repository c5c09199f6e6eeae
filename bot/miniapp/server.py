"""The dashboard's web server (aiohttp.web): the built front end, a JSON API and a live push (Server-Sent Events).

Every API call carries Telegram's signed initData (header ``Authorization: tma <initData>``; the event stream,
which a browser opens without headers, passes it as ``?initData=``). It is verified on every call and the
user id is taken from it and nowhere else; nothing is kept in cookies. The access log is off: the event
stream's address carries the initData.

Everything the dashboard does goes through the same services as the chat: a sell is the Seller's tap or the
streams' exit request, a strategy is saved by the account service (which reconfigures the stream), a
withdrawal goes through the executor and its guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.accounts import AccountError
from bot.exits.withdraw import WithdrawalError, Withdrawer, token_amount_text, token_units
from bot.miniapp.initdata import InitDataError, WebAppUser, verify_init_data
from bot.miniapp.security import PinLocked, Security, SecurityError
from bot.notify.outbox import Priority
from bot.solana_rpc import RpcError
from bot.strategy import Level, Strategy, StrategyError
from storage.copy import CopyStore
from storage.db import Database
from storage.history import PnlHistory
from storage.miniapp import Withdrawals

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.services import Services

log = logging.getLogger("lasersell_bot.miniapp")

PUSH_INTERVAL_S = 0.25  # how often the event stream looks for a change to push
HEARTBEAT_S = 15.0
LAMPORTS_PER_SOL = 1_000_000_000
HISTORY_RANGES = {"1d": 86_400_000, "7d": 7 * 86_400_000, "30d": 30 * 86_400_000}
STRATEGY_FIELDS = ("take_profit_pct", "stop_loss_pct", "trailing_stop_pct", "deadline_s", "sell_on_graduation",
                   "liquidity_guard", "breakeven_trail_pct", "ladder")


def static_dir() -> Path:
    return Path(str(resources.files("bot.miniapp") / "static"))


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


Handler = Callable[[web.Request, int], Awaitable[Any]]


class MiniAppServer:
    """Serves the dashboard for one bot. `clock` (Unix seconds) drives initData freshness and security delays.

    Built with the other services (`bot.wiring`) and reaching them through `services`, a callback: nothing calls
    it before the bot has started, by when every service exists."""

    def __init__(self, settings: Settings, db: Database, services: Callable[[], Services], *,
                 clock: Callable[[], float] = time.time) -> None:
        self._services = services
        self.settings = settings
        self.db = db
        self.clock = clock
        self.security = Security(
            db,
            delay_s=settings.miniapp_security_delay_s,
            max_attempts=settings.miniapp_pin_attempts,
            lockout_s=settings.miniapp_pin_lockout_s,
            notify=self.tell,
            clock=lambda: self.clock(),
        )
        self.withdrawals = Withdrawals(db, lambda: int(self.clock() * 1000))
        self.copy = CopyStore(db)
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.url = ""
        self.app = self.build()

    @property
    def services(self) -> Services:
        return self._services()

    @property
    def withdrawer(self) -> Withdrawer:
        return Withdrawer(self.services, self.withdrawals)

    # --- wiring -------------------------------------------------------------------------------------------
    def build(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        r = app.router
        r.add_get("/", self.index)
        r.add_get("/api/events", self.events)
        for method, path, handler in (
            ("GET", "/api/me", self.me),
            ("GET", "/api/positions", self.positions),
            ("POST", "/api/positions/{id}/sell", self.sell_position),
            ("GET", "/api/positions/{id}/chart", self.chart),
            ("POST", "/api/signals/{id}/{action}", self.signal_action),
            ("GET", "/api/strategy", self.strategy),
            ("POST", "/api/strategy/check", self.strategy_check),
            ("POST", "/api/strategy", self.strategy_save),
            ("GET", "/api/copy", self.copy_page),
            ("POST", "/api/copy", self.copy_update),
            ("GET", "/api/history", self.history),
            ("POST", "/api/wallets/import", self.wallet_import),
            ("POST", "/api/wallets/{id}/export", self.wallet_export),
            ("POST", "/api/wallets/{id}/remove", self.wallet_remove),
            ("POST", "/api/pin", self.pin_set),
            ("POST", "/api/pin/change", self.pin_change),
            ("POST", "/api/pin/cancel", self.pin_cancel),
            ("GET", "/api/allowlist", self.allowlist),
            ("POST", "/api/allowlist", self.allowlist_add),
            ("POST", "/api/allowlist/{id}/remove", self.allowlist_remove),
            ("POST", "/api/withdraw", self.withdraw),
            ("GET", "/api/tokens", self.tokens),
        ):
            r.add_route(method, path, self._api(handler))
        static = static_dir()
        if (static / "assets").is_dir():
            r.add_static("/assets", static / "assets")
        return app

    async def start(self, listen: str, public_url: str | None = None) -> str:
        host, _, port = listen.rpartition(":")
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, int(port))
        await site.start()
        bound = self._runner.addresses[0]
        self.url = (public_url or f"http://{host}:{bound[1]}").rstrip("/")
        log.info("dashboard serving at %s", self.url)
        return self.url

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _user_from(self, raw: str) -> int:
        return self._verified(raw).id

    def _verified(self, raw: str) -> WebAppUser:
        token = self.settings.telegram_bot_token or ""
        try:
            return verify_init_data(raw, token, max_age_s=self.settings.miniapp_initdata_max_age_s, now=self.clock())
        except InitDataError as exc:
            raise ApiError(401, str(exc)) from None

    def _api(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                header = request.headers.get("Authorization", "")
                if not header.startswith("tma "):
                    raise ApiError(401, "no initData: open the dashboard from the bot's menu button")
                user_id = self._user_from(header[4:])
                if await self.services.users.get(user_id) is None:
                    raise ApiError(403, "Start the bot in the chat first (/start), then open the dashboard.")
                result = await handler(request, user_id)
            except ApiError as exc:
                return web.json_response({"error": str(exc)}, status=exc.status)
            except PinLocked as exc:
                return web.json_response({"error": str(exc), "locked": True}, status=423)
            except (SecurityError, WithdrawalError, AccountError, StrategyError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
            return result if isinstance(result, web.StreamResponse) else web.json_response(result)

        return run

    async def tell(self, user_id: int, text: str) -> None:
        """A notice in the user's chat (security changes are always told there)."""
        user = await self.services.users.get(user_id)
        outbox = self.services.outbox
        if user is None:
            return
        try:
            await outbox.send_message(user.chat_id, text, priority=Priority.URGENT)
        except Exception as exc:  # the notice is best effort; the change itself stands
            log.warning("security notice not delivered: %s", type(exc).__name__)

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "The request body is not JSON.") from None
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        return body

    @staticmethod
    def _text(body: dict[str, Any], name: str, limit: int = 200) -> str:
        value = body.get(name, "")
        if not isinstance(value, str) or len(value) > limit:
            raise ApiError(400, f"{name} must be text of at most {limit} characters.")
        return value

    # --- pages --------------------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.StreamResponse:
        page = static_dir() / "index.html"
        if not page.is_file():
            return web.Response(status=503, text="The dashboard's front end is not built (npm run build in webapp/).")
        return web.FileResponse(page, headers={"Cache-Control": "no-store"})

    async def me(self, request: web.Request, user_id: int) -> dict[str, Any]:
        user = await self.services.users.get(user_id)
        views = await self.services.accounts.overview(user_id)
        changes = await self.security.changes.pending(user_id)
        return {
            "user": {"id": user_id, "first_name": user.first_name if user else ""},
            "has_pin": await self.security.has_pin(user_id),
            "wallets": [
                {"id": v.wallet.id, "address": v.wallet.address, "label": v.wallet.label, "sol": _sol(v.sol_lamports)}
                for v in views
            ],
            "pending": [{"kind": c.kind, "effective_at": c.effective_at} for c in changes],
            "now": int(self.clock() * 1000),
        }

    async def _positions(self, user_id: int) -> dict[str, Any]:
        positions = await self.services.streams.positions.open_for(user_id)
        signals = await self.services.inbox.signals.for_user(user_id, ("pending",))
        out = []
        for p in positions:
            basis = (p.proceeds_units or 0) - (p.profit_units or 0)
            out.append({
                "id": p.position_id, "label": p.label, "mint": p.mint, "wallet": p.wallet, "quote": p.quote,
                "tokens": p.tokens, "decimals": p.decimals, "value": p.proceeds_units, "profit": p.profit_units,
                "pnl_pct": round(100 * (p.profit_units or 0) / basis, 2) if basis > 0 and p.profit_units is not None else None,
                "liquidity": p.liquidity_trend, "waiting_exit": p.waiting_exit,
            })
        pending = [{"id": s.id, "position_id": s.position_id, "reason": s.reason, "profit": s.profit_units}
                   for s in signals]
        return {"positions": out, "signals": pending}

    async def positions(self, request: web.Request, user_id: int) -> dict[str, Any]:
        return await self._positions(user_id)

    async def events(self, request: web.Request) -> web.StreamResponse:
        try:
            user = self._verified(request.query.get("initData", ""))
        except ApiError as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        user_id, expires = user.id, user.auth_date + self.settings.miniapp_initdata_max_age_s
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        last = ""
        quiet = 0.0
        with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
            while not self._closing.is_set() and self.clock() < expires:  # then the page must be reopened
                snapshot = json.dumps(await self._positions(user_id), separators=(",", ":"))
                if snapshot != last:
                    await response.write(f"event: positions\ndata: {snapshot}\n\n".encode())
                    last, quiet = snapshot, 0.0
                elif quiet >= HEARTBEAT_S:
                    await response.write(b": keep-alive\n\n")
                    quiet = 0.0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), PUSH_INTERVAL_S)
                quiet += PUSH_INTERVAL_S
        return response

    async def sell_position(self, request: web.Request, user_id: int) -> dict[str, Any]:
        position_id = _int(request.match_info["id"])
        streams = self.services.streams
        position = await streams.positions.get(user_id, position_id)
        if position is None or position.status != "open":
            raise ApiError(404, "This position is closed or not yours.")
        if await streams.request_exit(user_id, position_id):
            return {"message": "Asking LaserSell for the exit transaction…"}
        if user_id in streams.workers:
            return {"message": "Your stream is reconnecting; I will ask as soon as it is back."}
        raise ApiError(409, "Your stream is not running: finish /start or /resume in the chat first.")

    async def signal_action(self, request: web.Request, user_id: int) -> dict[str, Any]:
        signal_id, action = request.match_info["id"], request.match_info["action"]
        if action == "skip":
            _ok, words = await self.services.inbox.skip(user_id, signal_id)
            return {"message": words}
        if action not in ("sell", "retry", "refresh"):
            raise ApiError(404, "Unknown action.")
        words = await self.services.seller.tap(user_id, signal_id, action)  # the chat's Sell button, same path
        await self.services.seller.wait_sent(signal_id)
        return {"message": words}

    async def chart(self, request: web.Request, user_id: int) -> dict[str, Any]:
        position_id = _int(request.match_info["id"])
        position = await self.services.streams.positions.get(user_id, position_id)
        if position is None:
            raise ApiError(404, "This position is not yours.")
        history = PnlHistory.for_db(self.db)
        samples = await history.samples(user_id, position_id)
        marks = await history.marks(user_id, position_id)
        strategy = Strategy.from_json(position.strategy_json) if position.strategy_json else \
            await self.services.accounts.strategy(user_id)
        levels = []
        if strategy.take_profit_pct:
            levels.append({"label": "Take profit", "pct": strategy.take_profit_pct})
        if strategy.stop_loss_pct:
            levels.append({"label": "Stop loss", "pct": -strategy.stop_loss_pct})
        for index, level in enumerate(strategy.ladder, start=1):
            levels.append({"label": f"Ladder {index} ({level.sell_pct:g}%)", "pct": level.profit_pct})
        return {
            "label": position.label, "quote": position.quote,
            "samples": [{"t": s.t_ms, "pnl_pct": round(100 * s.profit_units / s.basis_units, 3) if s.basis_units else 0,
                         "value": s.proceeds_units} for s in samples],
            "marks": [{"t": m.t_ms, "kind": m.kind, "label": m.label} for m in marks],
            "levels": levels,
            "bands": position.bands,
        }

    # --- strategy -----------------------------------------------------------------------------------------
    async def strategy(self, request: web.Request, user_id: int) -> dict[str, Any]:
        current = await self.services.accounts.strategy(user_id)
        return {"strategy": _strategy_json(current), "lines": current.describe()}

    @staticmethod
    def _strategy_from(body: dict[str, Any]) -> Strategy:
        data = body.get("strategy")
        if not isinstance(data, dict) or set(data) - set(STRATEGY_FIELDS):
            raise ApiError(400, f"strategy must be an object with the fields {', '.join(STRATEGY_FIELDS)}.")
        try:
            ladder = tuple(Level(float(lv["profit_pct"]), float(lv["sell_pct"]), float(lv.get("trailing_stop_pct", 0)))
                           for lv in data.get("ladder", []))
            values = {k: data[k] for k in STRATEGY_FIELDS if k in data and k != "ladder"}
            for name in ("take_profit_pct", "stop_loss_pct", "trailing_stop_pct", "breakeven_trail_pct"):
                if name in values:
                    values[name] = float(values[name])
            if "deadline_s" in values:
                if float(values["deadline_s"]) != int(float(values["deadline_s"])):
                    raise StrategyError("deadline must be whole seconds")
                values["deadline_s"] = int(float(values["deadline_s"]))
            for name in ("sell_on_graduation", "liquidity_guard"):
                if name in values and not isinstance(values[name], bool):
                    raise StrategyError(f"{name} must be true or false")
            return Strategy(**values, ladder=ladder)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, StrategyError):
                raise
            raise StrategyError("every field must be a number (ladder levels need profit_pct and sell_pct)") from None

    async def strategy_check(self, request: web.Request, user_id: int) -> dict[str, Any]:
        try:
            strategy = self._strategy_from(await self._body(request)).validated()
        except StrategyError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "lines": strategy.describe()}

    async def strategy_save(self, request: web.Request, user_id: int) -> dict[str, Any]:
        saved = await self.services.accounts.set_strategy(user_id, self._strategy_from(await self._body(request)))
        return {"strategy": _strategy_json(saved), "lines": saved.describe(), "message": "Saved. Your stream uses it now."}

    # --- copy trading -------------------------------------------------------------------------------------
    async def copy_page(self, request: web.Request, user_id: int) -> dict[str, Any]:
        rows = []
        for w in await self.copy.wallets(user_id):
            rows.append({"address": w.address, "nickname": w.nickname, "amount_sol": w.amount_units / LAMPORTS_PER_SOL,
                         "quote": w.quote, "mode": w.mode, "enabled": w.enabled, "disabled_reason": w.disabled_reason,
                         "stats": await self.copy.stats(user_id, w.address)})
        return {"wallets": rows, "limits": await self.copy.limits(user_id)}

    async def copy_update(self, request: web.Request, user_id: int) -> dict[str, Any]:
        body = await self._body(request)
        address = self._text(body, "address", 64)
        if await self.copy.find(user_id, address) is None:
            raise ApiError(404, "You do not copy that wallet: add it in the chat with /copy.")
        values: dict[str, Any] = {}
        if "mode" in body:
            if body["mode"] not in ("ask", "auto"):
                raise ApiError(400, "mode is ask (Copy / Skip buttons) or auto.")
            values["mode"] = body["mode"]
        if "enabled" in body:
            if not isinstance(body["enabled"], bool):
                raise ApiError(400, "enabled is true or false.")
            values["enabled"] = int(body["enabled"])
            if body["enabled"]:
                values["disabled_reason"] = None
        if "amount_sol" in body:
            amount = body["amount_sol"]
            if isinstance(amount, bool) or not isinstance(amount, int | float) or not 0.001 <= amount <= 100:
                raise ApiError(400, "amount_sol is a number from 0.001 to 100 SOL per copy.")
            values["amount_units"] = int(round(amount * LAMPORTS_PER_SOL))
        if not values:
            raise ApiError(400, "Nothing to change: send mode, enabled or amount_sol.")
        await self.copy.update(user_id, address, **values)
        await self.services.copier.changed(user_id)
        return await self.copy_page(request, user_id)

    # --- history ------------------------------------------------------------------------------------------
    async def history(self, request: web.Request, user_id: int) -> dict[str, Any]:
        span = request.query.get("range", "7d")
        if span not in HISTORY_RANGES:
            raise ApiError(400, "range is 1d, 7d or 30d.")
        since = int(self.clock() * 1000) - HISTORY_RANGES[span]
        sells: list[tuple[int, int, str]] = []  # (time, PnL in lamports, token)
        for s in await self.services.inbox.signals.for_user(user_id, ("landed",), limit=500):
            outcome = s.outcome
            if s.updated_at < since or outcome.get("pnl") is None or outcome.get("quote", "SOL") != "SOL":
                continue
            position = await self.services.streams.positions.get(user_id, s.position_id)
            sells.append((s.updated_at, int(outcome["pnl"]), position.label if position else s.mint[:6]))
        sells.sort()
        total = 0
        curve: list[dict[str, Any]] = [{"t": since, "total_sol": 0.0}] if sells else []  # the curve starts at 0
        for t, pnl, _label in sells:
            total += pnl
            curve.append({"t": t, "total_sol": total / LAMPORTS_PER_SOL})
        return {
            "range": span, "curve": curve, "total_sol": total / LAMPORTS_PER_SOL,
            "sells": [{"t": t, "label": label, "pnl_sol": pnl / LAMPORTS_PER_SOL} for t, pnl, label in sells][-50:],
            "wins": sum(1 for _t, pnl, _label in sells if pnl > 0), "count": len(sells),
        }

    # --- wallets and secrets ------------------------------------------------------------------------------
    async def wallet_import(self, request: web.Request, user_id: int) -> dict[str, Any]:
        body = await self._body(request)
        secret = self._text(body, "secret", 1000)
        label = self._text(body, "label", 64) or None
        wallet = await self.services.accounts.import_wallet(user_id, secret, label)
        del secret, body
        await self.tell(user_id, f"👛 Wallet {wallet.label} ({wallet.address[:4]}…{wallet.address[-4:]}) was imported "
                                 "in your dashboard. Its key is sealed and never shown in the chat.")
        return {"wallet": {"id": wallet.id, "address": wallet.address, "label": wallet.label}}

    async def _pinned(self, request: web.Request, user_id: int) -> dict[str, Any]:
        body = await self._body(request)
        await self.security.verify(user_id, self._text(body, "pin", 32))
        return body

    async def wallet_export(self, request: web.Request, user_id: int) -> dict[str, Any]:
        await self._pinned(request, user_id)
        wallet, secret = await self.services.accounts.export(user_id, _int(request.match_info["id"]))
        await self.tell(user_id, f"🔑 The key of wallet {wallet.label} was exported in your dashboard.")
        return {"address": wallet.address, "secret": secret}

    async def wallet_remove(self, request: web.Request, user_id: int) -> dict[str, Any]:
        await self._pinned(request, user_id)
        wallet = await self.services.accounts.remove(user_id, _int(request.match_info["id"]))
        await self.tell(user_id, f"👛 Wallet {wallet.label} was removed in your dashboard.")
        return {"message": f"Removed {wallet.label}."}

    # --- PIN ----------------------------------------------------------------------------------------------
    async def pin_set(self, request: web.Request, user_id: int) -> dict[str, Any]:
        body = await self._body(request)
        await self.security.set_first_pin(user_id, self._text(body, "pin", 32))
        return {"message": "PIN set."}

    async def pin_change(self, request: web.Request, user_id: int) -> dict[str, Any]:
        body = await self._body(request)
        new = body.get("new")
        if new is not None and not isinstance(new, str):
            raise ApiError(400, "new must be the new PIN, or null to remove the PIN.")
        change = await self.security.change_pin(user_id, self._text(body, "current", 32), new)
        return {"message": "Asked. It takes effect after the security delay; you were told in the chat.",
                "effective_at": change.effective_at}

    async def pin_cancel(self, request: web.Request, user_id: int) -> dict[str, Any]:
        cancelled = await self.security.cancel_changes(user_id)
        return {"message": "Cancelled." if cancelled else "Nothing was pending."}

    # --- allow-list and withdrawals ---------------------------------------------------------------------
    async def allowlist(self, request: web.Request, user_id: int) -> dict[str, Any]:
        now = int(self.clock() * 1000)
        entries = await self.security.allowlist.list(user_id)
        return {"now": now, "addresses": [
            {"id": e.id, "address": e.address, "label": e.label, "usable_at": e.usable_at, "usable": e.usable(now)}
            for e in entries
        ]}

    async def allowlist_add(self, request: web.Request, user_id: int) -> dict[str, Any]:
        body = await self._body(request)
        entry = await self.security.add_address(
            user_id, self._text(body, "address", 64), self._text(body, "label", 64), self._text(body, "pin", 32)
        )
        return {"id": entry.id, "usable_at": entry.usable_at}

    async def allowlist_remove(self, request: web.Request, user_id: int) -> dict[str, Any]:
        await self.security.remove_address(user_id, request.match_info["id"])
        return {"message": "Removed."}

    async def tokens(self, request: web.Request, user_id: int) -> dict[str, Any]:
        """The tokens a wallet of the user holds (`?wallet=ADDRESS`), to pick one to withdraw."""
        wallet = request.query.get("wallet", "")
        if wallet not in {w.address for w in await self.services.accounts.wallets.list(user_id)}:
            raise ApiError(400, "wallet must be the address of one of your wallets.")
        try:
            holdings = await self.services.rpc.get_token_holdings(wallet)
        except RpcError as exc:
            raise ApiError(502, f"The Solana node did not answer ({exc}). Try again.") from None
        labels = {p.mint: p.label for p in await self.services.streams.positions.open_for(user_id) if p.wallet == wallet}
        return {"tokens": [
            {"mint": t.mint, "label": labels.get(t.mint), "amount": token_amount_text(t.amount, t.decimals),
             "decimals": t.decimals}
            for t in holdings if t.amount > 0
        ]}

    async def withdraw(self, request: web.Request, user_id: int) -> dict[str, Any]:
        body = await self._body(request)
        wallet = self._text(body, "wallet", 64)
        destination = self._text(body, "destination", 64)
        sweep = body.get("sweep") is True
        if body.get("mint") is not None:
            return await self._withdraw_token(body, user_id, wallet, destination, sweep)
        lamports: int | None = None
        if not sweep:
            amount = body.get("amount_sol")
            if isinstance(amount, bool) or not isinstance(amount, int | float) or not 0 < amount <= 1_000_000:
                raise ApiError(400, "amount_sol is the SOL to send, a number above 0 (or choose Sweep).")
            lamports = int(round(amount * LAMPORTS_PER_SOL))
        await self.security.usable_address(user_id, destination)  # before the PIN: a locked address costs no try
        await self.security.verify(user_id, self._text(body, "pin", 32))
        outcome = await self.withdrawer.withdraw(user_id, wallet, destination, lamports)
        if outcome.kind == "landed":
            await self.tell(user_id, f"💸 Withdrawal from your dashboard: {outcome.words}")
        return {"kind": outcome.kind, "message": outcome.words, "signature": outcome.signature}

    async def _withdraw_token(
        self, body: dict[str, Any], user_id: int, wallet: str, destination: str, sweep: bool
    ) -> dict[str, Any]:
        """A token withdrawal: `mint` and `amount` (tokens as typed, e.g. "12.5"), or `sweep` for the whole balance."""
        mint = self._text(body, "mint", 64)
        amount = body.get("amount")
        if not sweep and (isinstance(amount, bool) or not isinstance(amount, str | int | float) or amount == ""):
            raise ApiError(400, "amount is the number of tokens to send, e.g. \"12.5\" (or choose Sweep).")
        if not sweep:
            token_units(amount, 18)  # the shape of the number, before the PIN; the decimals are checked on the chain
        await self.security.usable_address(user_id, destination)  # before the PIN: a locked address costs no try
        await self.security.verify(user_id, self._text(body, "pin", 32))
        outcome = await self.withdrawer.withdraw_token(user_id, wallet, destination, mint, None if sweep else amount)
        if outcome.kind == "landed":
            await self.tell(user_id, f"💸 Withdrawal from your dashboard: {outcome.words}")
        return {"kind": outcome.kind, "message": outcome.words, "signature": outcome.signature}


def _int(text: str) -> int:
    if not text.isdigit():
        raise ApiError(404, "Not found.")
    return int(text)


def _sol(lamports: int | None) -> float | None:
    return None if lamports is None else lamports / LAMPORTS_PER_SOL


def _strategy_json(strategy: Strategy) -> dict[str, Any]:
    return {
        "take_profit_pct": strategy.take_profit_pct, "stop_loss_pct": strategy.stop_loss_pct,
        "trailing_stop_pct": strategy.trailing_stop_pct, "deadline_s": strategy.deadline_s,
        "sell_on_graduation": strategy.sell_on_graduation, "liquidity_guard": strategy.liquidity_guard,
        "breakeven_trail_pct": strategy.breakeven_trail_pct,
        "ladder": [{"profit_pct": lv.profit_pct, "sell_pct": lv.sell_pct, "trailing_stop_pct": lv.trailing_stop_pct}
                   for lv in strategy.ladder],
    }


__all__ = ["ApiError", "MiniAppServer", "static_dir"]
