"""A tensor's pictures (RGB bytes from the engine) as one PNG each, encoded with Pillow.

Tiles (the images of a batch, the channels, the slices) are laid out in a square-ish grid with
thin gaps; a heatmap gets its colour scale below (and a swatch for each non-finite colour).
Small pictures are drawn a whole number of times larger (squares of pixels, which PNG stores
in a few bytes); the PNG is kept within a byte budget (halved in size until it fits, so that a
report's HTML stays small) and shown at its own size (or as large as before it was halved).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from tensormagic.engine.tensorinfo.pictures.reports import (
    NAN_COLOR,
    NEGINF_COLOR,
    POSINF_COLOR,
    Raster,
)

#: Pixels between tiles.
GAP = 2
#: Small pictures are shown at least this wide or tall (their longest side), large ones at most.
MIN_DISPLAY = 256
MAX_DISPLAY = 512
#: The PNG bytes one report's pictures may take together (base64 adds a third in the HTML).
PNG_BUDGET = 120_000
#: The gaps: transparent.
GAP_COLOR = (128, 128, 128, 0)
#: Labels (of tiles, of the colour scale's ends and swatches): a grey that reads on light and dark pages.
TEXT_COLOR = (128, 128, 128, 255)
LABEL_SIZE = 11


def pillow() -> Any:
    """PIL.Image, or None when Pillow is not installed."""
    try:
        from PIL import Image
    except ImportError:
        return None
    return Image


def missing_pillow() -> str | None:
    """A one-line hint when Pillow is not installed (None: it is)."""
    return None if pillow() is not None else "to see the tensor's pictures, install Pillow (pip install pillow)"


def grid(tiles: Sequence[Raster]) -> tuple[int, int]:
    """(columns, rows) of the grid the tiles are laid out in."""
    cols = max(1, math.ceil(math.sqrt(len(tiles))))
    return cols, max(1, math.ceil(len(tiles) / cols))


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # an old Pillow: its bitmap font
        return ImageFont.load_default()


def compose(tiles: Sequence[Raster], legend: Sequence[tuple[int, int, int]] | None = None, ends: tuple[str, str] | None = None) -> Any:
    """One RGBA ``PIL.Image`` of the tiles in a grid (transparent gaps; each tile's label under
    it when there are several), and for a heatmap the colour scale (``legend``: its colours, low
    to high; ``ends``: the values at its two ends) and the NaN, +inf, -inf swatches below.
    Labels are drawn in TEXT_COLOR, a grey that reads on light and dark pages."""
    Image = pillow()
    from PIL import ImageDraw

    cols, rows = grid(tiles)
    cw = max(t.width for t in tiles)
    ch = max(t.height for t in tiles)
    # small pictures drawn k times larger, as squares of pixels (k: whole, the grid near MIN_DISPLAY)
    k = max(1, MIN_DISPLAY // max(cols * cw, rows * ch))
    cw, ch = cw * k, ch * k
    label_h = LABEL_SIZE + 4 if len(tiles) > 1 else 0
    width, height = cols * cw + (cols - 1) * GAP, rows * (ch + label_h) + (rows - 1) * GAP
    bar = 0 if legend is None else max(8, min(14, height // 12))
    extra = bar * 2 + LABEL_SIZE + GAP * 4 if bar else 0
    img = Image.new("RGBA", (max(width, 200 if bar else 1), height + extra), GAP_COLOR)
    draw = ImageDraw.Draw(img)
    font = _font(LABEL_SIZE)
    for i, t in enumerate(tiles):
        tile = Image.frombytes("RGB", (t.width, t.height), t.rgb)
        if k > 1:
            tile = tile.resize((t.width * k, t.height * k), Image.NEAREST)
        x, y = (i % cols) * (cw + GAP), (i // cols) * (ch + label_h + GAP)
        img.paste(tile, (x, y))
        if label_h:
            draw.text((x, y + t.height * k + 2), t.label, fill=TEXT_COLOR, font=font)
    if legend:
        scale = Image.new("RGB", (len(legend), 1))
        scale.putdata(list(legend))
        top = height + GAP
        img.paste(scale.resize((width, bar), Image.BILINEAR), (0, top))
        if ends:
            draw.text((0, top + bar + 1), ends[0], fill=TEXT_COLOR, font=font)
            right = draw.textlength(ends[1], font=font)
            draw.text((max(0, width - right), top + bar + 1), ends[1], fill=TEXT_COLOR, font=font)
        y = top + bar + LABEL_SIZE + 2 * GAP
        x = 0
        for name, colour in (("NaN", NAN_COLOR), ("+inf", POSINF_COLOR), ("-inf", NEGINF_COLOR)):
            swatch = Image.new("RGB", (bar, bar), (128, 128, 128))
            swatch.paste(Image.new("RGB", (bar - 2, bar - 2), colour), (1, 1))
            img.paste(swatch, (x, y))
            draw.text((x + bar + 3, y + (bar - LABEL_SIZE) // 2 - 1), name, fill=TEXT_COLOR, font=font)
            x += bar + 3 + int(draw.textlength(name, font=font)) + 10
    return img


def encode(img: Any, budget: int) -> tuple[bytes, tuple[int, int], int]:
    """PNG bytes of ``img`` within ``budget`` bytes (halved in size while too big), the size it
    should be shown at, and how many times it was halved."""
    Image = pillow()
    display = img.size
    longest = max(display)
    if longest > MAX_DISPLAY:
        display = (round(img.width * MAX_DISPLAY / longest), round(img.height * MAX_DISPLAY / longest))
    halved = 0
    while True:
        out = io.BytesIO()
        img.save(out, format="PNG", compress_level=6)
        data = out.getvalue()
        if len(data) <= budget or max(img.size) <= 32:
            return data, display, halved
        img = img.resize((max(1, img.width // 2), max(1, img.height // 2)), Image.BOX)
        halved += 1


__all__ = ["MAX_DISPLAY", "MIN_DISPLAY", "PNG_BUDGET", "compose", "encode", "grid", "missing_pillow", "pillow"]
