"""Webhook mode: the secret token on every request, each update processed once across instances, and the
health and metrics endpoints on the same port."""

from __future__ import annotations

import types
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from telegram.ext import Application

from bot.webhook import SECRET_HEADER, WebhookServer
from storage.db import Database

SECRET = "s3cret-token_for-tests"
TOKEN = "123456:" + "A" * 35


def update(update_id: int, text: str = "/start") -> dict[str, object]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id, "date": 0, "text": text,
            "chat": {"id": 7, "type": "private"}, "from": {"id": 7, "is_bot": False, "first_name": "Ann"},
        },
    }


async def instance(db: Database) -> WebhookServer:
    app = Application.builder().token(TOKEN).updater(None).build()
    services = types.SimpleNamespace(db=db, streams=None, ownership=None, outbox=None, bot=None)
    server = WebhookServer(app, services, url="https://bot.example/telegram", secret=SECRET, host="127.0.0.1", port=0)
    await server.start(set_webhook=False)
    return server


@pytest.fixture
async def two_instances(db_target: Path | str) -> AsyncIterator[tuple[WebhookServer, WebhookServer]]:
    db_a, db_b = await Database.open(db_target), await Database.open(db_target)
    a, b = await instance(db_a), await instance(db_b)
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()
        await db_a.close()
        await db_b.close()


async def post(server: WebhookServer, body: object, secret: str | None = SECRET) -> tuple[int, dict[str, object]]:
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    async with aiohttp.ClientSession() as session, session.post(
        f"http://127.0.0.1:{server.bound_port}/telegram", json=body, headers=headers
    ) as resp:
        return resp.status, await resp.json()


async def test_a_request_without_the_secret_token_is_refused_and_queues_nothing(two_instances) -> None:  # type: ignore[no-untyped-def]
    a, _ = two_instances
    assert (await post(a, update(1), secret=None))[0] == 401
    assert (await post(a, update(1), secret="wrong"))[0] == 401
    status, body = await post(a, {"no": "update"})
    assert status == 400 and "not a Telegram update" in str(body["description"])
    assert a.app.update_queue.qsize() == 0
    # the same update with the token is then taken: the refusals recorded nothing
    assert (await post(a, update(1)))[0] == 200 and a.app.update_queue.qsize() == 1


async def test_an_update_posted_again_to_any_instance_is_processed_once(two_instances) -> None:  # type: ignore[no-untyped-def]
    a, b = two_instances
    assert await post(a, update(10)) == (200, {"ok": True})
    assert await post(b, update(10)) == (200, {"ok": True, "duplicate": True})  # Telegram's re-delivery
    assert await post(a, update(10)) == (200, {"ok": True, "duplicate": True})
    assert await post(b, update(11)) == (200, {"ok": True})
    assert (a.app.update_queue.qsize(), b.app.update_queue.qsize()) == (1, 1)
    queued = await a.app.update_queue.get()
    assert queued.update_id == 10 and queued.message.text == "/start"


async def test_health_and_metrics_share_the_webhook_port(two_instances) -> None:  # type: ignore[no-untyped-def]
    a, _ = two_instances
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{a.bound_port}/healthz") as resp:
            assert resp.status == 200
            health = await resp.json()
        async with session.get(f"http://127.0.0.1:{a.bound_port}/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
    assert health["ok"] is True and health["database"] == "ok"
    for name in ("lasersell_streams_running", "lasersell_stream_leases_held", "lasersell_outbox_depth",
                 "lasersell_exit_signal_to_message_seconds_bucket", "lasersell_sells", "lasersell_guard_refusals"):
        assert name in text
