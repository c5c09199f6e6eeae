"""The inbound PnL lane: told apart without a parse, newest per position, handed out at a bounded pace."""

from __future__ import annotations

import asyncio
import json

import pytest

from bot.stream.client import StreamClient, StreamClosed, StreamConfig, pnl_position_id


async def _config() -> StreamConfig:
    return StreamConfig(wallet_pubkeys=[], strategy={})


def frame(message: dict[str, object], *, spaced: bool = False) -> bytes:
    return json.dumps(message, separators=(", ", ": ") if spaced else (",", ":")).encode()


def pnl(position_id: int, profit: int) -> dict[str, object]:
    return {"type": "pnl_update", "position_id": position_id, "profit_units": profit,
            "proceeds_units": 1_000 + profit, "server_time_ms": 1_700_000_000_000}


def test_a_pnl_frame_is_recognised_by_its_head_and_nothing_else_is() -> None:
    assert pnl_position_id(frame(pnl(42, 1))) == 42
    assert pnl_position_id(frame(pnl(7, 1), spaced=True)) == 7
    exit_signal = {"type": "exit_signal_with_tx", "position_id": 3, "note": '{"type":"pnl_update","position_id":3,'}
    assert pnl_position_id(frame(exit_signal)) is None
    assert pnl_position_id(b'{"position_id":3,"type":"pnl_update"}') is None  # other order: parsed in full
    assert pnl_position_id(b'{"type":"pnl_update","position_id":-3,') is None
    assert pnl_position_id(b'{"type":"pnl_update","position_id":03,') is None


async def test_a_busy_position_is_handed_out_once_per_interval_with_its_newest_numbers() -> None:
    client = StreamClient("key-made-by-this-test", _config, pnl_interval_s=0.2)
    client._live = True  # noqa: SLF001 - frames fed as the socket would, without a server
    for profit in range(1_000):
        client._on_text(frame(pnl(1, profit)))  # noqa: SLF001
    first = await client.next_event()
    assert first.type == "pnl_update" and first.data["profit_units"] == 999
    assert client.pending_count() == 0
    for profit in range(1_000, 1_500):
        client._on_text(frame(pnl(1, profit)))  # noqa: SLF001
    # resting: nothing is handed out until the interval is over (a stopped client says so at once)...
    with pytest.raises(StreamClosed):
        await client.next_event()
    # ...then only the newest
    async with asyncio.timeout(5):
        while not client._has_noise():  # noqa: SLF001, ASYNC110 - the rest ends on a timer
            await asyncio.sleep(0.05)
    second = await client.next_event()
    assert second.data["profit_units"] == 1_499
    assert client.messages_received == 1_500
    assert client.pnl_coalesced >= 1_498 and client.pnl_shed == 0


async def test_an_exit_signal_read_after_many_pnl_frames_is_handed_out_first() -> None:
    client = StreamClient("key-made-by-this-test", _config)
    client._live = True  # noqa: SLF001
    for i in range(50_000):
        client._on_text(frame(pnl(i % 100, i)))  # noqa: SLF001
    client._on_text(frame({  # noqa: SLF001
        "type": "exit_signal_with_tx", "session_id": 1, "position_id": 5, "wallet_pubkey": "W", "mint": "M",
        "position_tokens": 1, "profit_units": 1, "reason": "stop_loss", "triggered_at_ms": 1,
        "unsigned_tx_b64": "AQID",
    }))
    assert client.pending_count() == 101  # bounded: the newest PnL per position and the exit
    assert (await client.next_event()).is_exit_signal
