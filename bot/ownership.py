"""Stream ownership across instances: each user's stream runs in exactly one instance at a time.

An instance takes a lease per stream (storage/leases.py) and renews them all on a heartbeat. The rules:

- **Bounded loss.** A lease lasts `ttl_s` on the database's clock. An instance that dies stops renewing;
  its leases expire within `ttl_s` and the others take them over on their next heartbeat, after a random
  delay (`takeover_jitter_s`) so they do not all rush at the same rows. Takeover therefore takes at most
  about `ttl_s + heartbeat_s + takeover_jitter_s`.
- **Fencing.** Every new owner bumps the lease's token. A heartbeat that finds a lease gone, or its token
  changed, stops that stream at once (`on_lost`). An instance that cannot renew at all (the database is
  unreachable) stops every stream before its leases can have expired (`ttl_s - fence_margin_s` after the
  last renewal it began), so the key's one session is never used by two instances.
- **Handover.** `stop()` stops the streams first, then releases the leases (expired now) and, on
  PostgreSQL, NOTIFYs: the other instances claim them at once instead of on their next heartbeat.
- **Spread.** An instance takes at most its fair share (wanted streams / live instances, rounded up) of
  the free leases in one heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bot.strategy import Strategy
from storage.db import Database
from storage.leases import Leases
from storage.pg import _dsn

log = logging.getLogger("lasersell_bot.ownership")

CHANNEL = "lasersell_stream_leases"


def instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"



def budget_share(total_rate: float, live: int) -> float:
    """One instance's share of the bot's Telegram budget (messages/s) when `live` instances share it.

    Each instance's bucket holds one message (`Outbox.set_global_rate`): in any one second it sends at most
    its rate plus one, so the shares leave one message a second per instance for that, and together the
    instances stay within `total_rate`."""
    live = max(1, live)
    return max(0.5, (total_rate - live) / live)

class Ownership:
    def __init__(
        self,
        db: Database,
        *,
        candidates: Callable[[], Awaitable[list[int]]],
        on_acquired: Callable[[int], Awaitable[Any]],
        on_lost: Callable[[int], Awaitable[Any]],
        owner: str | None = None,
        ttl_s: float = 5.0,
        heartbeat_s: float = 1.5,
        takeover_jitter_s: float = 0.5,
        fence_margin_s: float = 1.5,
        address: str = "",
        rng: random.Random | None = None,
        on_tick: Callable[[int], Awaitable[Any]] | None = None,
    ) -> None:
        if not 0 < heartbeat_s < ttl_s - fence_margin_s:
            raise ValueError("the heartbeat must come well within the lease time (heartbeat < ttl - margin)")
        self.db = db
        self.leases = Leases(db)
        self.owner = owner or instance_id()
        self.candidates = candidates
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self.ttl_s = ttl_s
        self.heartbeat_s = heartbeat_s
        self.takeover_jitter_s = takeover_jitter_s
        self.fence_margin_s = fence_margin_s
        self.address = address
        self.rng = rng or random.Random()
        self.on_tick = on_tick  # after each heartbeat, with the live instance count
        self.held: dict[int, int] = {}  # user_id -> fencing token
        self._valid_until = 0.0  # monotonic: past this our leases may have expired unseen
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._listener: Any = None
        self._lock = asyncio.Lock()
        self.takeovers = 0
        self.losses = 0
        self.live_count = 1  # live instances seen on the last heartbeat (shared budgets divide by it)

    @property
    def ttl_ms(self) -> int:
        return int(self.ttl_s * 1000)

    def holds(self, user_id: int) -> bool:
        """True while this instance may run the user's stream."""
        return user_id in self.held and time.monotonic() < self._valid_until

    def token(self, user_id: int) -> int | None:
        return self.held.get(user_id) if self.holds(user_id) else None

    async def start(self) -> None:
        await self.leases.ensure_tables()
        await self.leases.heartbeat(self.owner, self.address)
        await self._listen()
        await self.tick(jitter=False)
        self._task = asyncio.create_task(self._loop(), name="stream-ownership")

    async def stop(self) -> None:
        """Hand every stream over at once: stop them, release the leases, tell the others."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        async with self._lock:
            users = list(self.held)
            self.held.clear()
            for user_id in users:
                with contextlib.suppress(Exception):
                    await self.on_lost(user_id)
            with contextlib.suppress(Exception):
                await self.leases.release(self.owner)
                await self.leases.leave(self.owner)
                await self._notify()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.heartbeat_s * self.rng.uniform(0.85, 1.0))
            self._wake.clear()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("stream ownership heartbeat failed")

    async def tick(self, *, jitter: bool = True) -> None:
        """One heartbeat: renew, drop what was taken over, fence if renewing failed too long, claim free ones."""
        async with self._lock:
            began = time.monotonic()
            try:
                renewed = await self.leases.renew(self.owner, self.ttl_ms)
                await self.leases.heartbeat(self.owner, self.address)
            except Exception as exc:
                if time.monotonic() >= self._valid_until - self.fence_margin_s and self.held:
                    log.warning("cannot renew stream leases (%s): stopping %d stream(s)", exc, len(self.held))
                    await self._lose(list(self.held))
                raise
            self._valid_until = began + self.ttl_s - self.fence_margin_s
            lost = [u for u, token in self.held.items() if renewed.get(u) != token]
            if lost:
                log.warning("%d stream lease(s) were taken over: stopping those streams", len(lost))
                await self._lose(lost)
        with contextlib.suppress(Exception):
            self.live_count = max(1, len(await self.leases.live_instances(int(self.heartbeat_s * 2500))))
        if self.on_tick is not None:
            await self.on_tick(self.live_count)
        await self.claim(jitter=jitter)

    async def _lose(self, users: list[int]) -> None:
        for user_id in users:
            self.held.pop(user_id, None)
            self.losses += 1
            try:
                await self.on_lost(user_id)
            except Exception:
                log.exception("stopping the stream of a lost lease failed")

    async def claim(self, *, jitter: bool = True) -> list[int]:
        """Take free leases, up to this instance's fair share; start each stream taken."""
        wanted = [u for u in await self.candidates() if u not in self.held]
        if not wanted:
            return []
        free = await self.leases.free(wanted)
        if not free:
            return []
        live = await self.leases.live_instances(int(self.heartbeat_s * 2500))
        self.live_count = max(1, len(live))
        total = len(wanted) + len(self.held)
        share = math.ceil(total / max(1, len(live)))
        room = max(0, share - len(self.held))
        if room == 0:
            return []
        if jitter and self.takeover_jitter_s > 0:
            await asyncio.sleep(self.rng.uniform(0, self.takeover_jitter_s))
        self.rng.shuffle(free)
        taken = []
        async with self._lock:
            for user_id in free[:room]:
                token = await self.leases.acquire(user_id, self.owner, self.ttl_ms)
                if token is None:
                    continue  # another instance was quicker
                self.held[user_id] = token
                self._valid_until = max(self._valid_until, time.monotonic() + self.ttl_s - self.fence_margin_s)
                taken.append(user_id)
        for user_id in taken:
            self.takeovers += 1
            try:
                await self.on_acquired(user_id)
            except Exception:
                log.exception("starting the stream of a new lease failed")
        return taken

    async def release(self, user_ids: list[int]) -> None:
        """Give some streams up (the user paused, left): stop them, then free their leases."""
        async with self._lock:
            mine = [u for u in user_ids if u in self.held]
            for user_id in mine:
                self.held.pop(user_id, None)
                await self.on_lost(user_id)
            await self.leases.release(self.owner, mine)
        if mine:
            await self._notify()

    # --- PostgreSQL: hear about released leases at once -----------------------------------------------------
    async def _listen(self) -> None:
        if self.db.backend != "postgresql":
            return


        url = getattr(self.db, "url", "")
        try:
            self._listener = await asyncpg.connect(_dsn(url))
            await self._listener.add_listener(CHANNEL, lambda *_: self._wake.set())
        except Exception as exc:  # heartbeats still take the leases over, only later
            log.warning("LISTEN for lease handovers failed (%s): takeovers wait for the heartbeat", exc)
            self._listener = None

    async def _notify(self) -> None:
        await self.leases.notify(CHANNEL, self.owner)

    def figures(self) -> dict[str, int]:
        return {"leases_held": len(self.held), "takeovers": self.takeovers, "losses": self.losses}


REFRESH_CHANNEL = "lasersell_stream_refresh"
CALL_CHANNEL = "lasersell_stream_call"
REPLY_CHANNEL = "lasersell_stream_reply"
# what only the stream's owner can do, and so goes to it from any instance (arguments: ints, a strategy)
ROUTED = ("request_exit", "close_position", "set_position_strategy")


class OwnedStreams:
    """Wires Ownership to the user streams of a running bot (PostgreSQL, several instances).

    - `services.streams` runs a user's stream only while this instance holds the lease (`streams.ownership`);
    - a lease taken starts the stream (`streams.refresh`), a lease lost stops it (`stop_user`);
    - a change made through any instance (strategy, wallets, pause) reaches the stream's owner: locally when
      it is this one, else by NOTIFY to every instance, and the owner refreshes.
    """

    def __init__(self, services: Any, **timing: Any) -> None:
        self.services = services
        self.ownership = Ownership(
            services.db, candidates=self._candidates, on_acquired=self._acquired, on_lost=self._lost,
            on_tick=self._on_tick, **timing,
        )
        self._listener: Any = None
        self._local: dict[str, Callable[..., Awaitable[Any]]] = {}
        self._calls: dict[str, asyncio.Future[Any]] = {}
        self.call_timeout_s = 5.0

    # --- what needs the owner, from any instance -------------------------------------------------------------
    def _route_streams(self) -> None:
        """Make the streams' owner-only calls reach the owner wherever they are made (Sell taps, strategy
        changes handled by another instance): this instance's own streams directly, others by NOTIFY."""
        streams = self.services.streams
        if streams is None or self._local:
            return
        for op in ROUTED:
            original = getattr(streams, op)
            self._local[op] = original
            setattr(streams, op, self._routed(op, original))

    def _routed(self, op: str, original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(user_id: int, *args: Any) -> Any:
            if self.ownership.holds(user_id) or self.services.db.backend != "postgresql":
                return await original(user_id, *args)
            # stored here first (the exit asked for, the position's strategy): the owner acts on it even if
            # the call is lost, when it next (re)connects
            if op == "request_exit" and args:
                await self.services.streams.positions.update(user_id, int(args[0]), waiting_exit=True)
            elif op == "set_position_strategy":
                await original(user_id, *args)
            wire = [a.to_json() if hasattr(a, "to_json") else a for a in args]
            result = await self.call_owner(op, user_id, wire)
            return bool(result)

        return call

    async def call_owner(self, op: str, user_id: int, args: list[Any]) -> Any:
        """Run `op` in the instance owning the user's stream; None when no owner answers in time."""
        holder = await self.ownership.leases.holder(user_id)
        if holder is None or self._listener is None:
            return None
        request_id = uuid.uuid4().hex
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[request_id] = future
        payload = {"id": request_id, "from": self.ownership.owner, "to": holder, "op": op, "user": user_id,
                   "args": args}
        try:
            await self.ownership.leases.notify(CALL_CHANNEL, json.dumps(payload))
            return await asyncio.wait_for(future, self.call_timeout_s)
        except TimeoutError:
            log.warning("%s for a stream owned by %s: no answer in %.0f s", op, holder, self.call_timeout_s)
            return None
        finally:
            self._calls.pop(request_id, None)

    async def _serve_call(self, request: dict[str, Any]) -> None:
        op, user_id, args = str(request["op"]), int(request["user"]), list(request["args"])
        result: Any = None
        if op in self._local and self.ownership.holds(user_id):
            if op == "set_position_strategy" and args and isinstance(args[-1], str):

                args[-1] = Strategy.from_json(args[-1])
            try:
                result = bool(await self._local[op](user_id, *args))
            except Exception:
                log.exception("%s asked by another instance failed", op)
                result = False
        reply = {"id": request["id"], "to": request["from"], "result": result}
        await self.ownership.leases.notify(REPLY_CHANNEL, json.dumps(reply))

    def _heard_call(self, payload: str) -> None:
        request = json.loads(payload)
        if request.get("to") == self.ownership.owner:
            asyncio.get_running_loop().create_task(self._serve_call(request))

    def _heard_reply(self, payload: str) -> None:
        reply = json.loads(payload)
        if reply.get("to") == self.ownership.owner:
            future = self._calls.get(str(reply.get("id")))
            if future is not None and not future.done():
                future.set_result(reply.get("result"))

    async def _on_tick(self, live: int) -> None:
        await self._share_budget(live)
        try:
            await self.claim_broadcasts()
        except Exception:
            log.exception("claiming broadcasts failed")

    async def claim_broadcasts(self) -> list[int]:
        """A running broadcast is sent by one instance: the one holding its lease (key: minus its id).

        The instance that started it takes the lease on its next heartbeat; another instance resumes it
        only once that lease has expired (its sender died), or when nobody took it within two lease
        times. Each recipient is still sent at most once whatever happens (the row's atomic
        pending -> sending move), so the lease only keeps two instances from pacing one job twice.
        """
        broadcasts = getattr(self.services, "broadcasts", None)
        if broadcasts is None or not hasattr(broadcasts, "running_here"):
            return []
        leases, owner, ttl_ms = self.ownership.leases, self.ownership.owner, self.ownership.ttl_ms
        for job_id in broadcasts.running_here():
            await leases.acquire(-job_id, owner, ttl_ms)
        claimed = []
        here = broadcasts.running_here()
        for job in await broadcasts.jobs.running():
            if job.id in here:
                continue
            lease = await leases.get(-job.id)
            now = await leases.now_ms()
            if lease is None:
                started = job.started_at_ms or job.created_at_ms
                if now - int(started) < 2 * ttl_ms:
                    continue  # its sender has not taken the lease yet
            elif lease.expires_at > now:
                continue  # sent elsewhere
            if await leases.acquire(-job.id, owner, ttl_ms) is not None:
                log.info("broadcast %s: its sender stopped; resuming it here", job.id)
                await broadcasts.resume_job(job)
                claimed.append(job.id)
        return claimed

    async def _share_budget(self, live: int) -> None:
        """Telegram's per-bot rate is one budget for all instances: each takes its share of it."""
        outbox = getattr(self.services, "outbox", None)
        settings = getattr(self.services, "settings", None)
        if outbox is None or settings is None or not hasattr(outbox, "set_global_rate"):
            return
        share = budget_share(settings.telegram_global_rate, live)
        if abs(outbox.global_rate - share) > 1e-9:
            log.info("%d live instance(s): this one sends at most %.1f messages/s", live, share)
            outbox.set_global_rate(share)

    async def _candidates(self) -> list[int]:
        return await self.ownership.leases.stream_candidates()

    async def _acquired(self, user_id: int) -> None:
        if self.services.streams is not None:
            await self.services.streams.refresh(user_id)

    async def _lost(self, user_id: int) -> None:
        if self.services.streams is not None:
            await self.services.streams.stop_user(user_id)

    async def refresh(self, user_id: int) -> None:
        """What `accounts.on_change` calls: the owner brings the stream in line with storage."""
        if self.ownership.holds(user_id):
            await self._acquired(user_id)
            return
        await self.ownership.leases.notify(REFRESH_CHANNEL, str(user_id))
        # a user who now wants a stream nobody holds: claim it here rather than wait for the heartbeat
        self.ownership._wake.set()

    async def start(self) -> None:
        self.services.ownership = self.ownership
        if self.services.db.backend == "postgresql":
            loop = asyncio.get_running_loop()

            def heard(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
                if payload.isdigit() and self.ownership.holds(int(payload)):
                    loop.create_task(self._acquired(int(payload)))

            try:
                self._listener = await asyncpg.connect(_dsn(getattr(self.services.db, "url", "")))
                await self._listener.add_listener(REFRESH_CHANNEL, heard)
                await self._listener.add_listener(CALL_CHANNEL, lambda _c, _p, _ch, payload: self._heard_call(payload))
                await self._listener.add_listener(REPLY_CHANNEL, lambda _c, _p, _ch, payload: self._heard_reply(payload))
            except Exception as exc:
                log.warning("LISTEN for stream changes failed (%s)", exc)
                self._listener = None
        self._route_streams()
        await self.ownership.start()

    async def stop(self) -> None:
        await self.ownership.stop()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
