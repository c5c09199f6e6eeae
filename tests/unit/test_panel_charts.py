"""The PnL chart as a trader sees it: the peak inside the axes, labels that do not run together, and a
partial sell drawn as a sell (the line breaks at it) rather than as a fall in price."""

from __future__ import annotations

import io

from PIL import Image

from bot.notify import charts
from bot.notify.charts import render_pnl_chart
from storage.history import Mark, Sample

START = 1_700_000_000_000


def panel_box(image: Image.Image) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the plot area: the pixels of the panel colour."""
    panel = tuple(int(charts.PANEL[i:i + 2], 16) for i in (1, 3, 5))
    rgb = image.convert("RGB")
    width, height = rgb.size
    rows = [y for y in range(height) if rgb.getpixel((width // 2, y)) == panel]
    columns = [x for x in range(width) if rgb.getpixel((x, height // 2)) == panel]
    return min(columns), min(rows), max(columns), max(rows)


def topmost_row(image: Image.Image, colour: str, tolerance: int = 30) -> int:
    target = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    rgb = image.convert("RGB")
    width, height = rgb.size
    for y in range(height):
        for x in range(0, width, 2):
            if sum(abs(a - b) for a, b in zip(rgb.getpixel((x, y)), target, strict=True)) <= tolerance:
                return y
    return height


def peak_is_inside(png: bytes) -> bool:
    """The value line's highest pixel sits below the plot's top edge (a clipped peak touches it)."""
    image = Image.open(io.BytesIO(png))
    _left, top, _right, _bottom = panel_box(image)
    return topmost_row(image, charts.VALUE) > top + 3


def spike(peak_at: int = 20, count: int = 40) -> list[Sample]:
    samples = []
    for i in range(count):
        value = 500_000_000 + (1_530_000_000 if i == peak_at else 10_000_000 * i)
        samples.append(Sample(START + i * 3_000, value, value - 500_000_000))
    return samples


def test_the_peak_of_a_sharp_spike_stays_inside_the_axes() -> None:
    for peak in (1_530_000_000, 1_000_000_000, 2_470_000_000):
        samples = [Sample(START + i * 3_000, 500_000_000 + (peak if i == 20 else 0), peak if i == 20 else 0)
                   for i in range(40)]
        assert peak_is_inside(render_pnl_chart(samples, title="spike")), peak


def test_marks_at_the_same_moment_get_their_own_rows_and_the_peak_still_fits() -> None:
    samples = spike()
    marks = [Mark(START + 20 * 3_000, "sell", "trailing_stop 25%"), Mark(START + 20 * 3_000, "sell", "deadline"),
             Mark(START + 21 * 3_000, "closed", "sold")]
    png = render_pnl_chart(samples, marks, title="crowded")
    assert peak_is_inside(png)


def test_a_partial_sell_breaks_the_line_instead_of_drawing_a_crash() -> None:
    samples = [Sample(START + i * 3_000, (1_000_000_000 if i < 20 else 500_000_000), 0) for i in range(40)]
    with_sell = Image.open(io.BytesIO(render_pnl_chart(samples, [Mark(START + 20 * 3_000, "sell", "card 50%")])))
    without = Image.open(io.BytesIO(render_pnl_chart(samples)))
    # the drop is drawn dotted in the sell colour, not as a solid blue fall
    sell = tuple(int(charts.MARK_COLOURS["sell"][i:i + 2], 16) for i in (1, 3, 5))

    def count(image: Image.Image, colour: tuple[int, ...]) -> int:
        rgb = image.convert("RGB")
        return sum(1 for px in rgb.get_flattened_data() if sum(abs(a - b) for a, b in zip(px, colour, strict=True)) < 40)

    blue = tuple(int(charts.VALUE[i:i + 2], 16) for i in (1, 3, 5))
    assert count(with_sell, sell) > 30
    assert count(with_sell, blue) < count(without, blue)
