"""Webhook delivery by the sandbox Telegram, as the real service does it, and the sandbox's load
balancer in front of several bot instances. The receivers are small aiohttp servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web

from sandbox.telegram import WEBHOOK_CONFLICT, SandboxTelegram

pytestmark = pytest.mark.timeout(30)

PUBLIC_URL = "https://bot.example/telegram"  # the load balancer's address, as the bot registers it
SECRET = "s3cret-Token_1"


class Receiver:
    """A bot instance's webhook endpoint: records what it is given and answers what `answer` says."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.updates: list[dict[str, Any]] = []
        self.secrets: list[str | None] = []
        self.answer: Callable[[dict[str, Any]], Awaitable[int]] | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        update = await request.json()
        status = await self.answer(update) if self.answer is not None else 200
        if status == 200:
            self.updates.append(update)
            self.secrets.append(request.headers.get("X-Telegram-Bot-Api-Secret-Token"))
        return web.Response(status=status)

    def texts(self) -> list[str]:
        return [u["message"]["text"] for u in self.updates if "message" in u]


@pytest.fixture
async def telegram() -> AsyncIterator[SandboxTelegram]:
    async with SandboxTelegram() as server:
        yield server


@pytest.fixture
async def receivers() -> AsyncIterator[list[Receiver]]:
    instances = [Receiver(name) for name in ("a", "b", "c")]
    for receiver in instances:
        await receiver.start()
    yield instances
    for receiver in instances:
        await receiver.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


async def api(http: httpx.AsyncClient, server: SandboxTelegram, method: str, **params: Any) -> dict[str, Any]:
    response = await http.post(f"{server.url}/bot{server.token}/{method}", json=params)
    body: dict[str, Any] = response.json()
    assert body.get("error_code", response.status_code) == response.status_code
    return body


async def behind_balancer(
    http: httpx.AsyncClient, telegram: SandboxTelegram, instances: list[str]
) -> None:
    """Every instance registers the public URL, as each would at start-up; the sandbox's load
    balancer sends to the instances."""
    first = await api(http, telegram, "setWebhook", url=PUBLIC_URL, secret_token=SECRET)
    again = await api(http, telegram, "setWebhook", url=PUBLIC_URL, secret_token=SECRET)
    assert (first["description"], again["description"]) == ("Webhook was set", "Webhook is already set")
    telegram.set_webhook_instances(instances)


async def closed_port_url() -> str:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    return f"http://127.0.0.1:{port}/hook"


async def test_updates_go_round_robin_over_the_instances_with_the_secret(telegram, receivers, client):
    await behind_balancer(client, telegram, [r.url for r in receivers])
    users = [telegram.add_user(f"User{n}")[0] for n in range(6)]
    for n, user in enumerate(users):
        telegram.send(user, f"hello {n}")
    await telegram.wait_for(lambda: sum(len(r.updates) for r in receivers) == 6)
    assert [len(r.updates) for r in receivers] == [2, 2, 2]
    assert {s for r in receivers for s in r.secrets} == {SECRET}
    assert sorted(t for r in receivers for t in r.texts()) == [f"hello {n}" for n in range(6)]
    info = (await api(client, telegram, "getWebhookInfo"))["result"]
    assert info["url"] == PUBLIC_URL and info["pending_update_count"] == 0
    assert "last_error_message" not in info
    body = await api(client, telegram, "getUpdates")
    assert (body["error_code"], body["description"]) == (409, WEBHOOK_CONFLICT)


async def test_a_5xx_is_redelivered_to_the_next_instance_with_the_same_update_id(telegram, receivers, client):
    a, b, _ = receivers
    refused: list[int] = []

    async def bad_gateway(update: dict[str, Any]) -> int:
        refused.append(update["update_id"])
        return 502

    a.answer = bad_gateway
    await behind_balancer(client, telegram, [a.url, b.url])
    user, _ = telegram.add_user("Ada")
    telegram.send(user, "/start")
    await telegram.wait_for(lambda: b.updates, timeout=30)  # a positive event: a loaded machine may take long
    assert a.updates == [] and [u["update_id"] for u in b.updates] == refused
    info = telegram.webhook_info()
    assert info["pending_update_count"] == 0
    assert info["last_error_message"] == "Wrong response from the webhook: 502 Bad Gateway"
    assert [d["url"] for d in telegram.webhook_deliveries()] == [a.url, b.url]


async def test_a_refused_connection_and_a_timeout_are_redelivered_elsewhere(receivers, client):
    async with SandboxTelegram(webhook_timeout_s=2.0) as telegram:
        await refused_then_timed_out_then_taken(telegram, receivers, client)


async def refused_then_timed_out_then_taken(
    telegram: SandboxTelegram, receivers: list[Receiver], client: httpx.AsyncClient
) -> None:
    a, b, _ = receivers
    stuck = asyncio.Event()

    async def hang(update: dict[str, Any]) -> int:
        await stuck.wait()  # never set: the sandbox gives up after its webhook timeout
        return 200

    a.answer = hang
    dead = await closed_port_url()
    await behind_balancer(client, telegram, [dead, a.url, b.url])
    user, _ = telegram.add_user("Ada")
    telegram.send(user, "first")
    await telegram.wait_for(lambda: b.updates, timeout=30)  # a positive event: a loaded machine may take long
    outcomes = [(d["url"], d["error"]) for d in telegram.webhook_deliveries()]
    assert outcomes == [(dead, "Connection refused"), (a.url, "Read timeout expired"), (b.url, None)]
    assert b.texts() == ["first"] and a.updates == []
    assert telegram.webhook_info()["last_error_message"] == "Read timeout expired"


async def test_one_chat_is_delivered_in_order_while_other_chats_go_on(telegram, receivers, client):
    a, b, c = receivers
    release = asyncio.Event()
    held: list[str] = []

    async def hold_the_first(update: dict[str, Any]) -> int:
        if update["message"]["text"] == "ada 1":
            held.append("ada 1")
            await release.wait()
        return 200

    for receiver in receivers:
        receiver.answer = hold_the_first
    await behind_balancer(client, telegram, [a.url, b.url, c.url])
    ada, _ = telegram.add_user("Ada")
    bob, _ = telegram.add_user("Bob")
    for n in (1, 2, 3):
        telegram.send(ada, f"ada {n}")
    telegram.send(bob, "bob 1")
    # Bob's update is delivered while Ada's first is held; Ada's next ones wait behind it
    await telegram.wait_for(lambda: any(r.texts() == ["bob 1"] for r in receivers) and held)
    assert [t for r in receivers for t in r.texts() if t.startswith("ada")] == []
    assert telegram.pending_update_count() == 3
    release.set()
    await telegram.wait_for(lambda: telegram.pending_update_count() == 0)
    ada_updates = sorted(
        (u for r in receivers for u in r.updates if u["message"]["chat"]["id"] == ada),
        key=lambda u: u["update_id"],
    )
    assert [u["message"]["text"] for u in ada_updates] == ["ada 1", "ada 2", "ada 3"]
    delivered = [d["update_id"] for d in telegram.webhook_deliveries() if d["error"] is None]
    ada_ids = [u["update_id"] for u in ada_updates]
    assert [i for i in delivered if i in ada_ids] == ada_ids  # accepted in order


async def test_delete_webhook_hands_the_queue_back_to_get_updates(telegram, receivers, client):
    dead = await closed_port_url()
    await behind_balancer(client, telegram, [dead])
    user, _ = telegram.add_user("Ada")
    telegram.send(user, "kept")
    await telegram.wait_for(lambda: telegram.webhook_info().get("last_error_message") == "Connection refused")
    assert (await api(client, telegram, "getWebhookInfo"))["result"]["pending_update_count"] == 1
    deleted = await api(client, telegram, "deleteWebhook")
    assert deleted["description"] == "Webhook was deleted"
    assert (await api(client, telegram, "getWebhookInfo"))["result"]["url"] == ""
    updates = (await api(client, telegram, "getUpdates"))["result"]
    assert [u["message"]["text"] for u in updates] == ["kept"]


async def test_the_balancer_over_the_driver_http_api(telegram, receivers, client):
    a, b, _ = receivers
    bad = await client.post(f"{telegram.url}/driver/webhook_instances", json={"urls": "http://x"})
    assert bad.status_code == 400 and "urls" in bad.json()["error"]
    bad = await client.post(f"{telegram.url}/driver/webhook_instances", json={"urls": ["ftp://x/hook"]})
    assert bad.status_code == 400 and "http://127.0.0.1:8080/hook" in bad.json()["error"]
    ok = await client.post(f"{telegram.url}/driver/webhook_instances", json={"urls": [a.url, b.url]})
    assert ok.status_code == 200
    await api(client, telegram, "setWebhook", url=PUBLIC_URL)
    user, _ = telegram.add_user("Ada")
    telegram.send(user, "one")
    telegram.send(user, "two")
    await telegram.wait_for(lambda: telegram.pending_update_count() == 0)
    assert (a.texts(), b.texts()) == (["one"], ["two"])
    deliveries = (await client.get(f"{telegram.url}/driver/webhook_deliveries")).json()["deliveries"]
    assert [(d["url"], d["error"]) for d in deliveries] == [(a.url, None), (b.url, None)]
