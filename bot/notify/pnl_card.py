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

# Plain words for reasons: they read the same on every machine, whatever fonts it has.
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

# Token names come in every script and with emoji. Characters DejaVu lacks are drawn with a CJK font and a
# colour emoji font when the machine has them (Debian: fonts-droid-fallback, Apache-2.0, and
# fonts-noto-color-emoji, OFL-1.1; the README's install step adds both). Without them such characters are
# left out rather than drawn as boxes.
_CJK_FONTS = (
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
)
_EMOJI_FONTS = ("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",)
EMOJI_BITMAP_SIZE = 109  # Noto Color Emoji holds bitmaps of this one size; they are scaled to the text

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
    # a pill holds words: emoji in an unknown reason are left out
    tidy = " ".join("".join(c for c in clean_text(reason.replace("_", " ")) if not _is_emoji(c)).split())
    return tidy[:1].upper() + tidy[1:] if tidy else None


def clean_text(text: str | None, limit: int = 120) -> str:
    """Drop what the fonts cannot draw or that breaks a one-line layout.

    Emoji go only when no colour emoji font is installed; control and format characters, variation
    selectors, unassigned and private code points go; line breaks become spaces. Other scripts,
    right-to-left included, are kept.
    """
    emoji = _emoji_font() is not None
    if not text:
        return ""
    kept: list[str] = []
    for ch in text[: limit * 4]:
        code = ord(ch)
        if ch in "\r\n\t":
            kept.append(" ")
            continue
        if 0xFE00 <= code <= 0xFE0F:
            continue
        if _is_emoji(ch) and not emoji:
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


def _is_emoji(ch: str) -> bool:
    code = ord(ch)
    return code >= 0x1F000 or 0x2600 <= code <= 0x27BF or 0x2B00 <= code <= 0x2BFF


@lru_cache(maxsize=1)
def _emoji_font() -> ImageFont.FreeTypeFont | None:
    for path in _EMOJI_FONTS:
        if Path(path).is_file():
            try:
                return ImageFont.truetype(path, EMOJI_BITMAP_SIZE)
            except OSError:
                continue
    return None


@lru_cache(maxsize=32)
def _cjk_font(size: int) -> ImageFont.FreeTypeFont | None:
    for path in _CJK_FONTS:
        if Path(path).is_file():
            try:
                return ImageFont.truetype(path, size)
            except OSError:
                continue
    return None


def _size(font: Font) -> int:
    return int(getattr(font, "size", 24))


@lru_cache(maxsize=4096)
def _glyph_in(font: Font, ch: str) -> bool:
    return _has_glyph(font, ch)


def _runs(font: Font, text: str) -> list[tuple[str, str]]:
    """Split text into runs of ("main" | "cjk" | "emoji", characters) by which font draws them; a
    character no font has is dropped (never a box)."""
    runs: list[tuple[str, str]] = []
    cjk = _cjk_font(_size(font))
    for ch in text:
        if ch == " " or _glyph_in(font, ch) and not _is_emoji(ch):
            kind = "main"
        elif _is_emoji(ch) and _emoji_font() is not None:
            kind = "emoji"
        elif cjk is not None and _glyph_in(cjk, ch):
            kind = "cjk"
        else:
            continue
        if runs and runs[-1][0] == kind and kind != "emoji":
            runs[-1] = (kind, runs[-1][1] + ch)
        else:
            runs.append((kind, ch))
    return runs


def _emoji_width(font: Font) -> float:
    return _size(font) * 1.18


def _width(font: Font, text: str) -> float:
    if not text:
        return 0.0
    if text.isascii():
        return font.getlength(text)
    total = 0.0
    for kind, run in _runs(font, text):
        if kind == "emoji":
            total += _emoji_width(font)
        else:
            total += (_cjk_font(_size(font)) if kind == "cjk" else font).getlength(run)  # type: ignore[union-attr]
    return total


@lru_cache(maxsize=256)
def _emoji_image(ch: str, height: int) -> Image.Image | None:
    emoji = _emoji_font()
    if emoji is None:
        return None
    canvas = Image.new("RGBA", (EMOJI_BITMAP_SIZE * 2, EMOJI_BITMAP_SIZE * 2), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((0, 0), ch, font=emoji, embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        return None
    glyph = canvas.crop(box)
    scale = height / max(1, glyph.height)
    return glyph.resize((max(1, round(glyph.width * scale)), height), Image.Resampling.LANCZOS)


def _text(image: Image.Image, xy: tuple[float, float], text: str, font: Font, fill: tuple[int, int, int]) -> None:
    """draw.text with the CJK and emoji fallbacks: each run in the font that has its glyphs."""
    draw = ImageDraw.Draw(image)
    if text.isascii():
        draw.text(xy, text, font=font, fill=fill)
        return
    ascent, _descent = _metrics(font)
    x, baseline = xy[0], xy[1] + ascent
    for kind, run in _runs(font, text):
        if kind == "emoji":
            glyph = _emoji_image(run, round(_size(font) * 0.95))
            if glyph is not None:
                image.paste(glyph, (round(x + _size(font) * 0.1), round(baseline - glyph.height * 0.88)), glyph)
            x += _emoji_width(font)
            continue
        run_font = _cjk_font(_size(font)) if kind == "cjk" else font
        assert run_font is not None
        draw.text((x, baseline), run, font=run_font, fill=fill, anchor="ls")
        x += run_font.getlength(run)


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
    _text(image, (PAD, PAD - 12), fit_text(title, title_font, title_room), title_font, TEXT)
    if name and name.casefold() != symbol.casefold():
        name_font = _font(32)
        _text(image, (PAD, PAD + 78), fit_text(name, name_font, title_room), name_font, MUTED)

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


def card_for_exit(
    *, label: str, name: str | None, basis_units: int, received_units: int, pnl_units: int, quote: str,
    hold_seconds: float, reason: str | None, sell_tokens: int | None = None, position_tokens: int | None = None,
    level_index: int | None = None,
) -> PnlCard:
    """The card for one landed sell, from what the bot knows then (quote units: lamports, or USD1 base
    units). Real cards and the docs sample both come through here, so the sample shows what traders get:
    no wallet or transaction footer (the chat message carries the transaction)."""
    per_unit = 10 ** (6 if quote == "USD1" else 9)
    partial = None
    if sell_tokens and position_tokens and sell_tokens < position_tokens:
        partial = f"{100 * sell_tokens / position_tokens:.0f}% sold" + (
            f", level {level_index + 1}" if level_index is not None else "")
    return PnlCard(
        token_symbol=label, token_name=name, entry_sol=basis_units / per_unit, exit_sol=received_units / per_unit,
        pnl_sol=pnl_units / per_unit, pnl_pct=100 * pnl_units / basis_units if basis_units else 0.0,
        hold_seconds=max(0.0, hold_seconds), reason=reason, partial=partial, quote=quote,
    )


def sample_card() -> PnlCard:
    """The docs sample: half of a position sold at the second take-profit level."""
    return card_for_exit(
        label="BONK", name=None, basis_units=250_000_000, received_units=318_500_000, pnl_units=68_500_000,
        quote="SOL", hold_seconds=252, reason="take_profit_level", sell_tokens=5_000_000, position_tokens=10_000_000,
        level_index=1,
    )


def write_sample(path: str | Path) -> Path:
    """Write one example card (the one shown in the docs) to path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(render_pnl_card(sample_card()))
    return target
