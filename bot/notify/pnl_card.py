"""The PnL card: a picture sent with each landed sell, sized for a Telegram photo on a phone."""

from __future__ import annotations

import io
import math
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

WIDTH, HEIGHT = 1200, 675
PAD = 64

BACKGROUND_TOP = (22, 26, 36)
BACKGROUND_BOTTOM = (11, 13, 19)
PANEL = (30, 35, 48)
TEXT = (236, 240, 246)
MUTED = (138, 148, 166)
FAINT = (86, 95, 112)
PROFIT = (34, 214, 120)
LOSS = (244, 67, 84)
FLAT = (170, 178, 192)

# Plain words: the card's fonts have no colour emoji, so the chat texts' emoji would print as boxes.
REASON_WORDS = {
    "target_profit": "Take profit reached",
    "take_profit": "Take profit reached",
    "tp": "Take profit reached",
    "chained_tp": "Take-profit level reached",
    "take_profit_level": "Take-profit level reached",
    "stop_loss": "Stop loss hit",
    "trailing_stop": "Trailing stop hit",
    "breakeven_trail": "Breakeven trail: back to entry",
    "timeout": "Deadline reached",
    "deadline_timeout": "Deadline reached",
    "deadline": "Deadline reached",
    "sell_now": "You asked to sell",
    "manual": "You asked to sell",
    "graduation": "Token graduated",
    "sell_on_graduation": "Token graduated",
    "liquidity_guard": "Liquidity guard: the pool was draining",
}

# Tried first because DejaVu covers far more scripts than Pillow's bundled font; absent is fine.
_FONT_DIRS = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/dejavu",
    "/usr/share/fonts/TTF",
    "/usr/local/share/fonts",
    "/Library/Fonts",
)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True)
class PnlCard:
    token_symbol: str
    token_name: str | None
    entry_sol: float
    exit_sol: float
    pnl_sol: float
    pnl_pct: float
    hold_seconds: float
    reason: str | None = None
    partial: str | None = None  # e.g. "50% sold, level 2"
    wallet_label: str | None = None
    signature_short: str | None = None
    quote: str = "SOL"  # the amounts above are whole units of this asset: SOL, or USD1 in USD1 markets


# ---------------------------------------------------------------- words and numbers


def format_sol(value: float, *, signed: bool = False) -> str:
    """'+0.0123 SOL', '-1.5 SOL': four decimals at most, trailing zeros dropped.

    Dust below 0.0001 keeps two significant digits instead of collapsing to 0.
    """
    if not math.isfinite(value):
        return "n/a"
    magnitude = abs(value)
    if magnitude == 0:
        return "0 SOL"
    decimals = 4
    if magnitude < 0.00005:
        # Two significant digits, capped at lamport precision.
        decimals = min(9, 1 - math.floor(math.log10(magnitude)))
    text = f"{magnitude:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text == "0":
        return "0 SOL"
    sign = ("+" if value > 0 else "-") if signed else ("-" if value < 0 else "")
    return f"{sign}{text} SOL"


def format_quote(value: float, quote: str = "SOL", *, signed: bool = False) -> str:
    """An amount of the position's quote asset: SOL as `format_sol`, USD1 with cents ('+12.50 USD1')."""
    if quote != "USD1":
        return format_sol(value, signed=signed)
    if not math.isfinite(value):
        return "n/a"
    text = f"{abs(value):,.2f}"
    if text == "0.00":
        return "0 USD1"
    sign = ("+" if value > 0 else "-") if signed else ("-" if value < 0 else "")
    return f"{sign}{text} USD1"


def format_pct(value: float) -> str:
    """'+27.4%', '-8.0%', '0.0%': one decimal, always signed unless it rounds to zero."""
    if not math.isfinite(value):
        return "n/a"
    text = f"{abs(value):,.1f}"
    if text == "0.0":
        return "0.0%"
    return f"{'+' if value > 0 else '-'}{text}%"


def format_hold(seconds: float) -> str:
    """'42s', '4m 12s', '2h 05m', '3d 4h': the two largest units that matter."""
    if not math.isfinite(seconds) or seconds < 0:
        seconds = 0
    total = int(seconds)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def reason_words(reason: str | None) -> str | None:
    """A stream reason in words; unknown reasons are shown tidied rather than hidden."""
    if not reason:
        return None
    words = REASON_WORDS.get(reason.strip().lower())
    if words:
        return words
    tidy = clean_text(reason.replace("_", " "))
    return tidy[:1].upper() + tidy[1:] if tidy else None


def clean_text(text: str | None, limit: int = 120) -> str:
    """Drop what the fonts cannot draw or that breaks a one-line layout.

    Emoji (no colour font here), control and format characters, unassigned and private code
    points go; line breaks become spaces. Other scripts, right-to-left included, are kept.
    """
    if not text:
        return ""
    kept: list[str] = []
    for ch in text[: limit * 4]:
        code = ord(ch)
        if ch in "\r\n\t":
            kept.append(" ")
            continue
        if code >= 0x1F000 or 0xFE00 <= code <= 0xFE0F or 0x2600 <= code <= 0x27BF:
            continue
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            continue
        kept.append(ch)
    return " ".join("".join(kept).split())[:limit]


# ---------------------------------------------------------------- fonts and drawing


@lru_cache(maxsize=64)
def _font(size: int, bold: bool = False) -> Font:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    for folder in _FONT_DIRS:
        path = Path(folder) / name
        if path.is_file():
            try:
                return ImageFont.truetype(str(path), size)
            except OSError:
                continue
    try:
        # Pillow >= 10.1 ships a scalable font; needs FreeType, which the wheels include.
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _width(font: Font, text: str) -> float:
    return font.getlength(text) if text else 0.0


def fit_text(text: str, font: Font, max_width: float) -> str:
    """The text, or its longest prefix plus an ellipsis, that fits in max_width pixels."""
    if _width(font, text) <= max_width:
        return text
    ellipsis = "…"
    low, high = 0, len(text)
    while low < high:  # longest prefix that fits with the ellipsis
        mid = (low + high + 1) // 2
        if _width(font, text[:mid].rstrip() + ellipsis) <= max_width:
            low = mid
        else:
            high = mid - 1
    return text[:low].rstrip() + ellipsis if low else ellipsis


def _has_glyph(font: Font, char: str) -> bool:
    """False when the font would draw its 'missing glyph' box for char."""
    missing = "\U0010fffd"  # private use: no font has a real glyph here
    return bytes(font.getmask(char)) != bytes(font.getmask(missing))


def _typeset_minus(text: str, font: Font) -> str:
    # A true minus sign is as wide as the plus; the hyphen looks stunted at display sizes.
    return text.replace("-", "\u2212") if text.startswith("-") and _has_glyph(font, "\u2212") else text


def _largest_font(text: str, max_width: float, sizes: range, bold: bool = True) -> Font:
    """The biggest font in sizes (descending) that fits text on one line."""
    font = _font(sizes.start, bold)
    for size in sizes:
        font = _font(size, bold)
        if _width(font, text) <= max_width:
            break
    return font


@lru_cache(maxsize=4)
def _backdrop(accent: tuple[int, int, int]) -> Image.Image:
    """Vertical gradient with a soft accent glow behind the PnL; cached per accent colour."""
    gradient = Image.linear_gradient("L").resize((WIDTH, HEIGHT))
    image = Image.composite(
        Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND_BOTTOM),
        Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND_TOP),
        gradient,
    )
    # Blur at a quarter size and scale up: the same soft glow for a fraction of the cost.
    small = Image.new("L", (WIDTH // 4, HEIGHT // 4), 0)
    ImageDraw.Draw(small).ellipse((-40, 30, 170, 120), fill=70)
    glow = small.filter(ImageFilter.GaussianBlur(18)).resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR)
    image.paste(Image.new("RGB", (WIDTH, HEIGHT), accent), (0, 0), glow)
    return image


def _pill(draw: ImageDraw.ImageDraw, right: float, top: float, text: str, font: Font,
          fill: tuple[int, int, int], colour: tuple[int, int, int]) -> float:
    """A rounded label whose right edge sits at `right`; returns its bottom."""
    ascent, descent = _metrics(font)
    width = _width(font, text)
    height = ascent + descent + 20
    left = right - width - 40
    draw.rounded_rectangle((left, top, right, top + height), radius=height / 2, fill=fill)
    draw.text((left + 20, top + 10), text, font=font, fill=colour)
    return top + height


def _metrics(font: Font) -> tuple[int, int]:
    if isinstance(font, ImageFont.FreeTypeFont):
        return font.getmetrics()
    box = font.getbbox("Ag")
    return int(box[3]), 0


def _blend(colour: tuple[int, int, int], base: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    return tuple(round(c * amount + b * (1 - amount)) for c, b in zip(colour, base, strict=True))  # type: ignore[return-value]


# ---------------------------------------------------------------- the card


def render_pnl_card(card: PnlCard) -> bytes:
    """Draw the card and return it as PNG bytes (1200x675)."""
    direction = card.pnl_sol if card.pnl_sol else card.pnl_pct
    if not math.isfinite(direction) or direction == 0:
        accent = FLAT
    else:
        accent = PROFIT if direction > 0 else LOSS

    image = _backdrop(accent).copy()
    draw = ImageDraw.Draw(image)
    inner = WIDTH - 2 * PAD

    # Accent bar down the left edge: the outcome at a glance, even as a thumbnail.
    draw.rectangle((0, 0, 10, HEIGHT), fill=accent)

    # Top right: why it sold and how much of the position, as pills.
    pill_font = _font(26, bold=True)
    pill_right = WIDTH - PAD
    pill_bottom = float(PAD - 8)
    right_column = 0.0
    reason = reason_words(card.reason)
    partial = clean_text(card.partial, 60)
    for text, fill, colour in (
        (reason, _blend(accent, PANEL, 0.22), _blend(accent, TEXT, 0.55)),
        (partial, PANEL, TEXT),
    ):
        if text:
            text = fit_text(text, pill_font, 460)
            pill_bottom = _pill(draw, pill_right, pill_bottom, text, pill_font, fill, colour) + 12
            right_column = max(right_column, _width(pill_font, text) + 40)

    # Top left: the token, with its name underneath when it adds something.
    symbol = clean_text(card.token_symbol, 40).lstrip("$")
    name = clean_text(card.token_name, 80)
    if not symbol:
        symbol, name = (name, "") if name else ("Unknown token", "")
    title = f"${symbol}" if symbol != "Unknown token" else symbol
    title_room = inner - (right_column + 32 if right_column else 0)
    title_font = _font(72, bold=True)
    draw.text((PAD, PAD - 12), fit_text(title, title_font, title_room), font=title_font, fill=TEXT)
    if name and name.casefold() != symbol.casefold():
        name_font = _font(32)
        draw.text((PAD, PAD + 78), fit_text(name, name_font, title_room), font=name_font, fill=MUTED)

    # The result: percent very large, SOL under it.
    pct_text = format_pct(card.pnl_pct)
    pct_font = _largest_font(pct_text, inner, range(168, 59, -8))
    pct_size = getattr(pct_font, "size", 168)
    # A long percent gets a smaller font; keep it centred in the same band.
    draw.text((PAD - 6, 168 + (168 - pct_size) * 0.45), _typeset_minus(pct_text, pct_font), font=pct_font,
              fill=accent)
    sol_font = _font(54, bold=True)
    sol_text = fit_text(format_quote(card.pnl_sol, card.quote, signed=True), sol_font, inner)
    draw.text((PAD, 360), _typeset_minus(sol_text, sol_font), font=sol_font, fill=_blend(accent, TEXT, 0.7))

    # Entry, exit and hold time in three panels.
    label_font = _font(24, bold=True)
    value_font = _font(40, bold=True)
    gap = 24
    box_width = (inner - 2 * gap) / 3
    top, bottom = 452, 568
    for index, (label, value) in enumerate((
        ("ENTRY", format_quote(card.entry_sol, card.quote)),
        ("EXIT", format_quote(card.exit_sol, card.quote)),
        ("HELD", format_hold(card.hold_seconds)),
    )):
        left = PAD + index * (box_width + gap)
        draw.rounded_rectangle((left, top, left + box_width, bottom), radius=18, fill=PANEL)
        draw.text((left + 26, top + 18), label, font=label_font, fill=MUTED)
        draw.text((left + 26, top + 52), fit_text(value, value_font, box_width - 52), font=value_font, fill=TEXT)

    # Footer: brand left, wallet and transaction right.
    footer_font = _font(24)
    footer_y = HEIGHT - PAD + 10
    draw.ellipse((PAD, footer_y + 6, PAD + 14, footer_y + 20), fill=accent)
    brand = "LaserSell exit"
    draw.text((PAD + 26, footer_y), brand, font=_font(24, bold=True), fill=MUTED)
    details = " · ".join(
        part for part in (clean_text(card.wallet_label, 40), clean_text(card.signature_short, 24)) if part
    )
    if details:
        room = inner - 26 - _width(_font(24, bold=True), brand) - 40
        details = fit_text(details, footer_font, room)
        draw.text((WIDTH - PAD - _width(footer_font, details), footer_y), details, font=footer_font, fill=FAINT)

    out = io.BytesIO()
    # Low compression: the card is mostly flat colour, so size barely changes and encoding stays fast.
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def sample_card() -> PnlCard:
    return PnlCard(
        token_symbol="BONK",
        token_name="Bonk Inu",
        entry_sol=0.5,
        exit_sol=0.637,
        pnl_sol=0.137,
        pnl_pct=27.4,
        hold_seconds=252,
        reason="take_profit_level",
        partial="50% sold, level 2",
        wallet_label="Main wallet",
        signature_short="5xQa…9fKd",
    )


def write_sample(path: str | Path) -> Path:
    """Write one example card (the one shown in the docs) to path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(render_pnl_card(sample_card()))
    return target
