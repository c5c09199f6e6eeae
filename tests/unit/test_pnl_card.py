"""The PnL card picture: a real PNG of the right size, coloured by the outcome, robust to odd names."""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Iterator

import pytest
from PIL import Image, ImageFont

import bot.notify.pnl_card as pnl_card
from bot.notify.pnl_card import (
    PnlCard,
    _emoji_font,
    clean_text,
    fit_text,
    format_hold,
    format_pct,
    format_sol,
    reason_words,
    render_pnl_card,
    sample_card,
    write_sample,
)

# Where the PnL percent is drawn (left part of the band under the title).
PCT_AREA = (64, 190, 760, 340)


def profit_card(**changes: object) -> PnlCard:
    return dataclasses.replace(sample_card(), **changes)  # type: ignore[arg-type]


def loss_card(**changes: object) -> PnlCard:
    base = dataclasses.replace(
        sample_card(), exit_sol=0.35, pnl_sol=-0.15, pnl_pct=-30.0, reason="stop_loss", partial=None
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def decode(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    image.load()
    return image.convert("RGB")


def count_pixels(image: Image.Image, box: tuple[int, int, int, int], kind: str) -> int:
    """Pixels in box that read clearly as green or red."""
    count = 0
    raw = image.crop(box).tobytes()
    for i in range(0, len(raw), 3):
        r, g, b = raw[i], raw[i + 1], raw[i + 2]
        if kind == "green" and g > 150 and g - r > 80 and g - b > 40:
            count += 1
        elif kind == "red" and r > 180 and r - g > 100 and r - b > 80:
            count += 1
    return count


# ---------------------------------------------------------------- the picture


def test_png_decodes_at_telegram_photo_size_and_is_not_blank() -> None:
    image = decode(render_pnl_card(sample_card()))
    assert image.size == (1200, 675)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 500
    # Text is drawn: bright, near-white pixels exist on the dark card.
    assert any(sum(rgb) > 650 for _, rgb in colours)


def test_profit_percent_is_green_and_not_red() -> None:
    image = decode(render_pnl_card(profit_card()))
    assert count_pixels(image, PCT_AREA, "green") > 5_000
    assert count_pixels(image, PCT_AREA, "red") == 0


def test_loss_percent_is_red_and_not_green() -> None:
    image = decode(render_pnl_card(loss_card()))
    assert count_pixels(image, PCT_AREA, "red") > 5_000
    assert count_pixels(image, PCT_AREA, "green") == 0


def test_break_even_is_neither_green_nor_red() -> None:
    image = decode(render_pnl_card(profit_card(exit_sol=0.5, pnl_sol=0.0, pnl_pct=0.0)))
    assert count_pixels(image, PCT_AREA, "green") == 0
    assert count_pixels(image, PCT_AREA, "red") == 0


def test_sign_follows_sol_when_percent_disagrees_by_rounding() -> None:
    # A tiny loss whose percent rounds to zero is still a loss.
    image = decode(render_pnl_card(loss_card(pnl_sol=-0.00001, pnl_pct=-0.001)))
    assert count_pixels(image, (0, 0, 12, 675), "red") > 1_000


def test_huge_percent_shrinks_to_fit_instead_of_running_off_the_card() -> None:
    image = decode(render_pnl_card(profit_card(pnl_pct=123_456_789.0)))
    right_margin = image.crop((1200 - 60, 190, 1200, 340))
    assert count_pixels(right_margin, (0, 0, 60, 150), "green") == 0
    assert count_pixels(image, (64, 190, 1136, 360), "green") > 5_000


ODD_NAMES = [
    ("", None),
    ("   ", "   "),
    ("🐸🚀", "🐸🚀 moon 🌕"),
    ("PEPE\u200d🔥", "Pepe\ufe0f"),
    ("שלום", "مرحبا بالعالم"),
    ("A\nB\tC\x00D\x1b", "line\r\nbreak"),
    ("\u202eRTLOVERRIDE", "\ud800 lone surrogate"),
    ("X" * 10_000, "Y" * 10_000),
    ("漢字トークン", "한국어 토큰 이름 " * 30),
    ("$$$", "$"),
]


@pytest.mark.parametrize(("symbol", "name"), ODD_NAMES)
def test_long_and_odd_names_render(symbol: str, name: str | None) -> None:
    card = profit_card(
        token_symbol=symbol,
        token_name=name,
        partial=name,
        wallet_label=symbol,
        signature_short=name,
        reason=symbol or None,
    )
    assert decode(render_pnl_card(card)).size == (1200, 675)


def test_non_finite_and_negative_numbers_render() -> None:
    card = loss_card(
        entry_sol=math.nan, exit_sol=math.inf, pnl_sol=-math.inf, pnl_pct=math.nan, hold_seconds=-5
    )
    assert decode(render_pnl_card(card)).size == (1200, 675)


@pytest.fixture
def no_system_fonts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(pnl_card, "_FONT_DIRS", ())
    pnl_card._font.cache_clear()
    yield
    pnl_card._font.cache_clear()


def test_falls_back_to_pillows_bundled_font(no_system_fonts: None) -> None:
    font = pnl_card._font(40, bold=True)
    assert "DejaVu" not in str(getattr(font, "path", ""))
    image = decode(render_pnl_card(loss_card(token_symbol="שלום🐸")))
    assert image.size == (1200, 675)
    assert count_pixels(image, PCT_AREA, "red") > 3_000


def test_write_sample_writes_the_card(tmp_path) -> None:
    target = write_sample(tmp_path / "docs" / "pnl-card.png")
    assert target.exists()
    image = decode(target.read_bytes())
    assert image.size == (1200, 675)
    assert count_pixels(image, PCT_AREA, "green") > 5_000


# ---------------------------------------------------------------- words and numbers


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (42.9, "42s"),
        (60, "1m 00s"),
        (252, "4m 12s"),
        (3_599, "59m 59s"),
        (3_600, "1h 00m"),
        (7_500, "2h 05m"),
        (86_399, "23h 59m"),
        (86_400, "1d 0h"),
        (3 * 86_400 + 4 * 3_600 + 59 * 60, "3d 4h"),
        (400 * 86_400, "400d 0h"),
        (-10, "0s"),
        (math.nan, "0s"),
    ],
)
def test_format_hold(seconds: float, text: str) -> None:
    assert format_hold(seconds) == text


@pytest.mark.parametrize(
    ("value", "signed", "text"),
    [
        (0.0123, True, "+0.0123 SOL"),
        (-1.5, True, "-1.5 SOL"),
        (1.5, False, "1.5 SOL"),
        (0.5, False, "0.5 SOL"),
        (2.0, False, "2 SOL"),
        (0.123456, True, "+0.1235 SOL"),
        (-0.00004, True, "-0.00004 SOL"),
        (0.0000123, True, "+0.000012 SOL"),
        (0.000000001, False, "0.000000001 SOL"),
        (0.0, True, "0 SOL"),
        (-0.0, True, "0 SOL"),
        (1234.5, True, "+1,234.5 SOL"),
        (math.inf, True, "n/a"),
    ],
)
def test_format_sol(value: float, signed: bool, text: str) -> None:
    assert format_sol(value, signed=signed) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (27.4, "+27.4%"),
        (27.44, "+27.4%"),
        (-8.0, "-8.0%"),
        (-99.96, "-100.0%"),
        (0.0, "0.0%"),
        (-0.04, "0.0%"),
        (12_345.67, "+12,345.7%"),
        (math.nan, "n/a"),
    ],
)
def test_format_pct(value: float, text: str) -> None:
    assert format_pct(value) == text


def test_reason_words() -> None:
    assert reason_words("take_profit") == "Take profit reached"
    assert reason_words("STOP_LOSS") == "Stop loss hit"
    assert reason_words("brand_new_rule") == "Brand new rule"
    assert reason_words(None) is None
    assert reason_words("") is None
    assert reason_words("🚀") is None


def test_clean_text_keeps_scripts_and_drops_what_cannot_be_drawn() -> None:
    # emoji stay when a colour emoji font is installed (and are left out, never boxed, without one)
    assert clean_text("🐸 PEPE\u200d\ufe0f") == ("🐸 PEPE" if _emoji_font() is not None else "PEPE")
    assert clean_text("שלום עולם") == "שלום עולם"
    assert clean_text("a\nb\t\x00c") == "a b c"
    assert clean_text(None) == ""
    assert len(clean_text("x" * 1_000, limit=50)) == 50


def test_fit_text_truncates_with_ellipsis_within_width() -> None:
    font = ImageFont.load_default(size=40)
    text = "SUPERLONGTOKENNAME" * 5
    fitted = fit_text(text, font, 300)
    assert fitted.endswith("…")
    assert text.startswith(fitted[:-1])
    assert font.getlength(fitted) <= 300
    assert fit_text("BONK", font, 300) == "BONK"
    assert fit_text("WIDE", font, 1) == "…"
