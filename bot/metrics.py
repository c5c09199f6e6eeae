"""What operators see of one instance: Prometheus metrics (prometheus-client) and a health check.

Served on the webhook's port (bot/webhook.py): `GET /metrics` and `GET /healthz`.

- `lasersell_streams_running`, `lasersell_stream_leases_held`: streams this instance runs, leases it holds;
- `lasersell_outbox_depth{priority}`: messages waiting in this instance's outbox, per priority;
- `lasersell_exit_signal_to_message_seconds`: from an exit signal's arrival to its Sell/Skip message sent;
- `lasersell_guard_refusals_total{rule}`: transactions the guard refused to sign, by rule;
- `lasersell_sells{outcome}`: sells by outcome (landed, failed, skipped, ...), from the shared database,
  so every instance reports the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from storage.health import HealthReads

REGISTRY = CollectorRegistry(auto_describe=True)

EXIT_LATENCY = Histogram(
    "lasersell_exit_signal_to_message_seconds",
    "Time from an exit signal's arrival from the stream to its Sell/Skip message sent to Telegram.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
GUARD_REFUSALS = Counter(
    "lasersell_guard_refusals", "Transactions the guard refused to sign, by rule.", ["rule"], registry=REGISTRY
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def exit_signal_sent(received_at_ms: int) -> None:
    """Record one exit signal's message going out (called where the Sell/Skip message is sent)."""
    EXIT_LATENCY.observe(max(0.0, time.time() - received_at_ms / 1000))


def guard_refused(rule: str) -> None:
    GUARD_REFUSALS.labels(rule=rule).inc()


class _Live(Collector):
    """Numbers read at scrape time from the running services."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self.sells: dict[str, int] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        services = self.services
        streams = getattr(services, "streams", None)
        streams = GaugeMetricFamily("lasersell_streams_running", "Stream sessions this instance runs.")
        streams.add_metric([], len(getattr(streams, "workers", {}) or {}))
        yield streams
        ownership = getattr(services, "ownership", None)
        leases = GaugeMetricFamily("lasersell_stream_leases_held", "Stream leases this instance holds.")
        leases.add_metric([], len(ownership.held) if ownership is not None else len(getattr(streams, "workers", {}) or {}))
        yield leases
        depth = GaugeMetricFamily("lasersell_outbox_depth", "Messages waiting in the outbox.", labels=["priority"])
        outbox = getattr(services, "outbox", None)
        if outbox is not None and hasattr(outbox, "queue_depth"):
            for priority, count in outbox.queue_depth().items():
                depth.add_metric([getattr(priority, "name", str(priority)).lower()], count)
        yield depth
        sells = GaugeMetricFamily("lasersell_sells", "Exit signals by outcome (the shared database).", labels=["outcome"])
        for outcome, count in sorted(self.sells.items()):
            sells.add_metric([outcome], count)
        yield sells


class Metrics:
    """The registry one instance serves; `render()` is the body of GET /metrics."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self.registry = CollectorRegistry()
        self._live = _Live(services)
        self.registry.register(self._live)

    async def refresh(self) -> None:
        """Read what comes from the database (before rendering: collectors cannot await)."""
        self._live.sells = await HealthReads(self.services.db).signals_by_state()

    async def render(self) -> bytes:
        await self.refresh()
        return generate_latest(self.registry) + generate_latest(REGISTRY)

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """For the load balancer: the database answers, Telegram was reached, streams are up."""
        checks: dict[str, Any] = {}
        ok = True
        try:
            await HealthReads(self.services.db).ping()
            checks["database"] = "ok"
        except Exception as exc:
            ok = False
            checks["database"] = f"unreachable: {type(exc).__name__}"
        bot = getattr(self.services, "bot", None)
        checks["telegram"] = "ok" if bot is None or getattr(bot, "_bot_user", None) is not None else "not reached"
        streams = getattr(self.services, "streams", None)
        workers = getattr(streams, "workers", {}) or {}
        up = sum(1 for w in workers.values() if getattr(getattr(w, "client", None), "state", "") == "connected")
        checks["streams"] = {"running": len(workers), "connected": up}
        return ok, checks
