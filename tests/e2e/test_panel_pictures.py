"""Pictures a trader receives, checked as images: the PnL chart keeps its peak inside the axes, and a
PnL card for a token named in CJK with emoji draws those glyphs (different glyphs, different pixels)."""

from __future__ import annotations

import io

from PIL import Image

from bot.notify.pnl_card import PAD, PnlCard, render_pnl_card
from tests.e2e.harness import Harness
from tests.e2e.test_trade import holding, open_card, pump
from tests.unit.test_panel_charts import peak_is_inside


def photos(h: Harness, chat_id: int) -> list[bytes]:
    tg = h.services.telegram
    return [data for m in tg.chat(chat_id) if m.get("photo")
            for data in [tg.photo_bytes(chat_id, m["message_id"])] if data]


async def test_the_pnl_chart_from_the_card_keeps_its_peak_inside(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h)
    for move in (60, 40, -50, -10):  # a sharp run-up and a fall: the peak is the highest point
        h.services.chain.market_move(mint, move)
        await pump(h, rounds=4)
    card = await open_card(trader)
    await trader.chat.press("PnL chart", message=card, expect=r"value over time")
    [png] = photos(h, trader.chat.chat_id)
    assert peak_is_inside(png)


def title_strip(png: bytes) -> Image.Image:
    """The card's top-left, where the token's symbol is written."""
    return Image.open(io.BytesIO(png)).convert("RGB").crop((PAD, PAD - 12, PAD + 480, PAD + 80))


def colourful(image: Image.Image) -> int:
    return sum(1 for r, g, b in image.get_flattened_data() if max(r, g, b) - min(r, g, b) > 90 and not g > r + 60)


async def test_a_cjk_and_emoji_token_gets_its_glyphs_drawn_on_the_pnl_card(harness: Harness) -> None:
    h = harness
    trader, _mint = await holding(h, symbol="狗狗币🚀")
    card = await open_card(trader, symbol="狗狗币🚀")
    signal = await trader.chat.press("Sell 100%", message=card, expect=r"You asked to sell")
    await trader.chat.press("Sell", message=signal)
    await trader.chat.wait_text(r"Sold .* for", timeout=15)
    await trader.chat.wait_for(lambda ms: any(m.get("photo") for m in ms), what="the PnL card")
    [png] = photos(h, trader.chat.chat_id)
    delivered = title_strip(png)
    assert colourful(delivered) > 200  # the rocket, in colour, not a box or nothing

    def reference(symbol: str) -> Image.Image:
        return title_strip(render_pnl_card(PnlCard(symbol, None, 0.5, 0.7, 0.2, 40.0, 60.0)))

    # a box is the same for every character it stands for: other glyphs must give other pixels
    assert reference("狗狗币🚀").tobytes() != reference("猫猫币🚀").tobytes()
    assert reference("狗狗币🚀").tobytes() != reference("狗狗币🐕").tobytes()
    same = sum(1 for a, b in zip(delivered.get_flattened_data(), reference("狗狗币🚀").get_flattened_data(),
                                 strict=True) if sum(abs(x - y) for x, y in zip(a, b, strict=True)) < 60)
    assert same > 0.9 * delivered.width * delivered.height  # the delivered title is those glyphs
