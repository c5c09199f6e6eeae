"""Webhook delivery as Telegram does it, and the load balancer the sandbox can put in front of it.

Telegram posts each update to the webhook until the receiver answers 2xx: a non-2xx answer, a
refused connection or a timeout leaves the update queued, and it is posted again later with the
same `update_id`. Updates of one chat go out one at a time and in order; different chats go out
side by side, up to `max_connections`. The last failure shows in getWebhookInfo.

Sandbox only: `instances` are the URLs behind the webhook's address, as a load balancer in front of
several bot instances would have them. Each attempt goes to the next instance in turn, so a
re-delivery usually lands on another instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from sandbox.telegram.model import Signal

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
FIRST_RETRY_S = 0.05
LAST_RETRY_S = 2.0


@dataclass
class Webhook:
    url: str
    secret_token: str | None
    max_connections: int
    allowed_updates: list[str] | None
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class _Attempts:
    """Delivery state of one queued update."""

    in_flight: bool = False
    not_before: float = 0.0  # loop time of the next attempt
    pause: float = FIRST_RETRY_S


@dataclass
class WebhookDelivery:
    """Posts the queued `updates` to the webhook while one is set; `run()` is the delivery loop."""

    updates: deque[dict[str, Any]]
    changed: Signal
    unix_now: Callable[[], int]
    timeout_s: float = 10.0
    webhook: Webhook | None = None
    instances: list[str] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    _attempts: dict[int, _Attempts] = field(default_factory=dict)
    _next_instance: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _session: aiohttp.ClientSession | None = None
    _stopping: bool = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        try:
            while not self._stopping:
                for update in self._startable(loop.time()):
                    # in flight before the task runs, so the next check does not start it again
                    self._attempts.setdefault(update["update_id"], _Attempts()).in_flight = True
                    task = asyncio.create_task(self._deliver(update))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                await self.changed.next_change(self._until_next_retry(loop.time()))
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._session.close()

    def stop(self) -> None:
        """Ends `run()` at its next wake-up (a cancel alone can be lost in `wait_for` on 3.11)."""
        self._stopping = True
        self.changed.fire()

    def _startable(self, now: float) -> list[dict[str, Any]]:
        """The first undelivered update of each chat, when it is not in flight and its pause is
        over, up to the webhook's free connections."""
        if self.webhook is None:
            return []
        free = self.webhook.max_connections - sum(a.in_flight for a in self._attempts.values())
        ready: list[dict[str, Any]] = []
        waiting_chats: set[Any] = set()
        for update in self.updates:
            if len(ready) >= free:
                break
            chat = chat_of(update)
            if chat in waiting_chats:
                continue
            waiting_chats.add(chat)
            attempts = self._attempts.get(update["update_id"])
            if attempts is None or (not attempts.in_flight and attempts.not_before <= now):
                ready.append(update)
        return ready

    def _until_next_retry(self, now: float) -> float | None:
        pauses = [a.not_before - now for a in self._attempts.values() if not a.in_flight and a.not_before > now]
        return min(pauses) if pauses and self.webhook is not None else None

    def _next_url(self, hook: Webhook) -> str:
        if not self.instances:
            return hook.url
        url = self.instances[self._next_instance % len(self.instances)]
        self._next_instance += 1
        return url

    async def _deliver(self, update: dict[str, Any]) -> None:
        hook = self.webhook
        assert hook is not None and self._session is not None
        update_id = update["update_id"]
        attempts = self._attempts[update_id]
        url = self._next_url(hook)
        headers = {"Content-Type": "application/json"}
        if hook.secret_token:
            headers[SECRET_HEADER] = hook.secret_token
        error = await self._post(url, json.dumps(update).encode(), headers)
        attempts.in_flight = False
        self.log.append({"update_id": update_id, "url": url, "error": error})
        if error is None:
            self._attempts.pop(update_id, None)
            with contextlib.suppress(ValueError):
                self.updates.remove(update)
        else:
            hook.last_error_date = self.unix_now()
            hook.last_error_message = error
            # the real service retries a failing webhook with growing pauses
            attempts.not_before = asyncio.get_running_loop().time() + attempts.pause
            attempts.pause = min(attempts.pause * 2, LAST_RETRY_S)
        self._forget_dropped()
        self.changed.fire()

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> str | None:
        """None when the receiver took the update, else getWebhookInfo's last_error_message."""
        assert self._session is not None
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return None
                return f"Wrong response from the webhook: {response.status} {response.reason}"
        except TimeoutError:
            return "Read timeout expired"
        except aiohttp.ClientConnectorError:
            return "Connection refused"
        except aiohttp.ClientError as exc:
            return f"Failed to deliver: {type(exc).__name__}"

    def _forget_dropped(self) -> None:
        queued = {update["update_id"] for update in self.updates}
        for update_id in [u for u, a in self._attempts.items() if u not in queued and not a.in_flight]:
            del self._attempts[update_id]

    def info(self, pending: int) -> dict[str, Any]:
        """What getWebhookInfo answers."""
        hook = self.webhook
        info: dict[str, Any] = {
            "url": hook.url if hook else "",
            "has_custom_certificate": False,
            "pending_update_count": pending,
        }
        if hook is not None:
            info["max_connections"] = hook.max_connections
            info["ip_address"] = "127.0.0.1"
            if hook.allowed_updates:
                info["allowed_updates"] = hook.allowed_updates
            if hook.last_error_date is not None:
                info["last_error_date"] = hook.last_error_date
                info["last_error_message"] = hook.last_error_message
        return info


def chat_of(update: dict[str, Any]) -> Any:
    """The chat an update belongs to (its order key); an update without one is its own key."""
    for kind, payload in update.items():
        if kind == "update_id" or not isinstance(payload, dict):
            continue
        message = payload.get("message") if kind == "callback_query" else payload
        if isinstance(message, dict) and isinstance(message.get("chat"), dict):
            return message["chat"].get("id")
        sender = payload.get("from")
        if isinstance(sender, dict):
            return sender.get("id")
    return ("update", update["update_id"])
