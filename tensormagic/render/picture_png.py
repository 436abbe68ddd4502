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

from tensormagic.engine.tensorinfo.pictures.reports import NAN_COLOR, NEGINF_COLOR, POSINF_COLOR, Raster

#: Pixels between tiles.
GAP = 2
#: Small pictures are shown at least this wide or tall (their longest side), large ones at most.
MIN_DISPLAY = 256
MAX_DISPLAY = 512
#: The PNG bytes one report's pictures may take together (base64 adds a third in the HTML).
PNG_BUDGET = 120_000
#: The gap colour (a grey that reads on light and dark pages).
GAP_COLOR = (128, 128, 128, 0)


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


def compose(tiles: Sequence[Raster], legend: Sequence[tuple[int, int, int]] | None = None) -> Any:
    """One RGBA ``PIL.Image`` of the tiles in a grid (transparent gaps), and for a heatmap the
    colour scale (``legend``: its colours, low to high) and the NaN, +inf, -inf swatches below."""
    Image = pillow()
    cols, rows = grid(tiles)
    cw = max(t.width for t in tiles)
    ch = max(t.height for t in tiles)
    # small pictures drawn k times larger, as squares of pixels (k: whole, the grid near MIN_DISPLAY)
    k = max(1, MIN_DISPLAY // max(cols * cw, rows * ch))
    cw, ch = cw * k, ch * k
    width, height = cols * cw + (cols - 1) * GAP, rows * ch + (rows - 1) * GAP
    bar = 0 if legend is None else max(6, min(16, height // 12))
    img = Image.new("RGBA", (max(width, 9 * bar), height + (bar * 2 + GAP * 2 if bar else 0)), GAP_COLOR)
    for i, t in enumerate(tiles):
        tile = Image.frombytes("RGB", (t.width, t.height), t.rgb)
        if k > 1:
            tile = tile.resize((t.width * k, t.height * k), Image.NEAREST)
        img.paste(tile, ((i % cols) * (cw + GAP), (i // cols) * (ch + GAP)))
    if legend:
        scale = Image.new("RGB", (len(legend), 1))
        scale.putdata(list(legend))
        img.paste(scale.resize((img.width, bar), Image.BILINEAR), (0, height + GAP))
        side = bar
        for j, colour in enumerate((NAN_COLOR, POSINF_COLOR, NEGINF_COLOR)):
            x = j * (side * 3)
            swatch = Image.new("RGB", (side, side), (128, 128, 128))
            swatch.paste(Image.new("RGB", (side - 2, side - 2), colour), (1, 1))
            img.paste(swatch, (x, height + bar + 2 * GAP))
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
        img.save(out, format="PNG", optimize=True)
        data = out.getvalue()
        if len(data) <= budget or max(img.size) <= 32:
            return data, display, halved
        img = img.resize((max(1, img.width // 2), max(1, img.height // 2)), Image.BOX)
        halved += 1


__all__ = ["MAX_DISPLAY", "MIN_DISPLAY", "PNG_BUDGET", "compose", "encode", "grid", "missing_pillow", "pillow"]
