"""Draw a :class:`~tensormagic.engine.preview.Preview` as a small PNG (Pillow, imported lazily).

``png(preview)`` gives the PNG's bytes (``data_uri`` the same inline), or None when Pillow is not
installed; ``sparkline`` gives a histogram's or a module's bars, or a heatmap's column means, as
block characters (what the HTML shows without Pillow; nothing for an image).  Non-finite
values are drawn in one colour of their own (magenta), so NaN/inf stand out in a heatmap.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

from tensormagic.engine.preview import Preview

#: Height of a picture in pixels (heatmaps keep their aspect ratio, up to twice as wide).
HEIGHT = 48
#: Viridis at nine stops (matplotlib's colormap, sampled): low values dark blue, high yellow.
VIRIDIS = [(68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141), (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37)]
NONFINITE = (255, 0, 255)
BAR = (37, 99, 235)
BLOCKS = " ▁▂▃▄▅▆▇█"


def _colour(x: float, lo: float | None, hi: float | None) -> tuple[int, int, int]:
    if not math.isfinite(x) or lo is None or hi is None:
        return NONFINITE
    f = 0.5 if hi <= lo else min(max((x - lo) / (hi - lo), 0.0), 1.0)
    pos = f * (len(VIRIDIS) - 1)
    i = min(int(pos), len(VIRIDIS) - 2)
    t = pos - i
    a, b = VIRIDIS[i], VIRIDIS[i + 1]
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError:
        return None
    return Image


def image_of(preview: Preview) -> Any:
    """A ``PIL.Image`` of the preview (None without Pillow or without values)."""
    Image = _pil()
    if Image is None or not preview.values:
        return None
    if preview.kind in ("image", "heatmap"):
        rows = preview.values
        h, w = len(rows), len(rows[0]) if rows else 0
        if not h or not w:
            return None
        img = Image.new("RGB", (w, h))
        if preview.kind == "image":
            img.putdata([tuple(round(min(max(c, 0.0), 1.0) * 255) for c in px[:3]) for row in rows for px in row])
        else:
            img.putdata([_colour(v, preview.lo, preview.hi) for row in rows for v in row])
        scale = HEIGHT / h  # HEIGHT tall, at most twice as wide, the aspect ratio kept
        if w * scale > 2 * HEIGHT:
            scale = 2 * HEIGHT / w
        return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.NEAREST)
    values = [max(0.0, v) for v in preview.values]
    top = max(values) or 1.0
    bar_w = 6 if len(values) <= 12 else (4 if len(values) <= 24 else 2)
    img = Image.new("RGB", (len(values) * bar_w + 1, HEIGHT // 2), (255, 255, 255))
    from PIL import ImageDraw

    draw = ImageDraw.Draw(img)
    for i, v in enumerate(values):
        height = max(1, round(v / top * (HEIGHT // 2 - 1))) if v > 0 else 0
        if height:
            draw.rectangle([i * bar_w + 1, HEIGHT // 2 - height, (i + 1) * bar_w - 1, HEIGHT // 2 - 1], fill=BAR)
    return img


def png(preview: Preview) -> bytes | None:
    """The PNG bytes of the preview, or None."""
    img = image_of(preview)
    if img is None:
        return None
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def data_uri(preview: Preview) -> str | None:
    """``data:image/png;base64,...`` of the preview, or None."""
    data = png(preview)
    return None if data is None else "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def sparkline(preview: Preview) -> str:
    """The preview's histogram or bars as block characters; a heatmap's column means; '' else."""
    if preview.kind in ("histogram", "bars"):
        values = preview.values
    elif preview.kind == "heatmap":
        cols = list(zip(*preview.values))
        values = [sum(v for v in c if math.isfinite(v)) / max(1, len(c)) for c in cols][:32]
        lo = min(values, default=0.0)
        values = [v - lo for v in values]
    else:
        return ""
    top = max(values, default=0.0)
    if top <= 0:
        return ""
    return "".join(BLOCKS[round(max(v, 0.0) / top * (len(BLOCKS) - 1))] for v in values)


__all__ = ["data_uri", "image_of", "png", "sparkline"]
