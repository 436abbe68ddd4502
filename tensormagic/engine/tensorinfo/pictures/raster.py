"""Shared steps of every picture, on the tensor's device: read every k-th row and column, map
values to colours, and copy the few small RGB pictures to the host once."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from tensormagic.engine.tensorinfo.pictures.options import MAX_PIXELS, MAX_SIDE
from tensormagic.engine.tensorinfo.pictures.reports import (
    NAN_COLOR,
    NEGINF_COLOR,
    POSINF_COLOR,
    Raster,
)

#: Viridis (matplotlib's default colour map) at nine stops: low values dark purple, high yellow.
VIRIDIS_STOPS = [(68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141), (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37)]
#: Colours on the scale (index 0: the lowest value).
LEVELS = 256

_LUTS: dict[str, torch.Tensor] = {}


@functools.cache
def viridis() -> tuple[tuple[int, int, int], ...]:
    """The scale's LEVELS colours, interpolated between the stops (the legend draws them; made once)."""
    stops = np.array(VIRIDIS_STOPS, dtype=np.float64)
    pos = np.linspace(0.0, len(stops) - 1.0, LEVELS)
    i = np.minimum(pos.astype(np.int64), len(stops) - 2)
    f = (pos - i)[:, None]
    table = np.rint(stops[i] * (1 - f) + stops[i + 1] * f).astype(np.int64)
    return tuple((int(r), int(g), int(b)) for r, g, b in table)


def lut(device: torch.device) -> torch.Tensor:
    """The scale as a (LEVELS, 3) uint8 tensor on ``device`` (made once per device)."""
    key = str(device)
    got = _LUTS.get(key)
    if got is None:
        got = _LUTS[key] = torch.tensor(viridis(), dtype=torch.uint8, device=device)
    return got


def tile_side(count: int) -> int:
    """The longest side each of ``count`` pictures laid out in a square-ish grid may have, so
    that the grid holds at most MAX_PIXELS pixels."""
    cols = max(1, math.ceil(math.sqrt(count)))
    return max(1, min(MAX_SIDE, math.isqrt(MAX_PIXELS) // cols))


def steps(height: int, width: int, side: int) -> tuple[int, int]:
    """Every k-th row and column read (the same k for both: the aspect ratio is kept) so that a
    (height, width) plane fits ``side`` x ``side``."""
    k = max(1, math.ceil(height / side), math.ceil(width / side))
    return k, k


def as_real(t: torch.Tensor) -> torch.Tensor:
    """Values a picture can place: |z| of complex values, float32 (float64 kept) of the rest, as
    one compact copy of its own (``t`` is a strided subsample of a big tensor: gathered once, not
    by every op that reads it)."""
    if t.is_complex():
        return t.abs().to(torch.float64, memory_format=torch.contiguous_format)
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    return t.to(dtype, memory_format=torch.contiguous_format, copy=True)  # always a copy: callers may change it in place


def block_any(mask: torch.Tensor, step: tuple[int, int]) -> torch.Tensor:
    """For each (step[0] x step[1]) block of a 2-D boolean mask: is any element True (the block's
    pixel is the one every k-th row and column puts at its top-left)."""
    sy, sx = step
    if (sy, sx) == (1, 1):
        return mask
    h, w = mask.shape
    hp, wp = math.ceil(h / sy) * sy, math.ceil(w / sx) * sx
    padded = torch.nn.functional.pad(mask.to(torch.uint8), (0, wp - w, 0, hp - h))
    return padded.view(hp // sy, sy, wp // sx, sx).amax(dim=(1, 3)).bool()


def colour_scale(values: torch.Tensor, lo: float | None, hi: float | None, finite: bool = False, scratch: bool = False) -> torch.Tensor:
    """Finite ``values`` (any shape) as (..., 3) uint8 colours of the scale from ``lo`` to ``hi``
    (the middle colour when they are equal); non-finite values get the lowest colour here (the
    caller paints them); ``finite``: the caller knows every value is finite (no clean-up pass);
    ``scratch``: ``values`` is the caller's own copy, used up in place (fresh memory for a
    temporary costs page faults that take longer than the arithmetic)."""
    table = lut(values.device)
    if lo is None or hi is None:
        return table[torch.zeros(values.shape, dtype=torch.int64, device=values.device)]
    own = scratch and values.dtype in (torch.float32, torch.float64)
    v = values if values.dtype in (torch.float32, torch.float64) else values.to(torch.float64)  # 256 levels: float32 is plenty
    if hi > lo:
        # level = (v - lo) / (hi - lo) * (LEVELS - 1): subtract first (exact for values near lo),
        # divide by the span (its reciprocal overflows for tiny spans), in halves where the span
        # overflows the dtype
        span = hi - lo
        if span < torch.finfo(v.dtype).max:
            f = (v.sub_(lo) if own else v.sub(lo)).div_(span).mul_(LEVELS - 1)
        else:
            f = (v.mul_(0.5) if own else v.mul(0.5)).sub_(lo * 0.5).div_(hi * 0.5 - lo * 0.5).mul_(LEVELS - 1)
    else:
        f = torch.full_like(v, (LEVELS - 1) * 0.5)
    if not finite:
        f.nan_to_num_(nan=0.0, posinf=LEVELS - 1.0, neginf=0.0)
    index = f.round_().clamp_(0, LEVELS - 1).to(torch.int32)  # index_select takes int32: half the memory
    return table.index_select(0, index.reshape(-1)).reshape(*values.shape, 3)  # index_select: a third of table[index]'s time


def paint(rgb: torch.Tensor, mask: torch.Tensor, colour: tuple[int, int, int]) -> torch.Tensor:
    """``rgb`` (..., 3) with the pixels of ``mask`` set to ``colour`` (in place)."""
    rgb[mask] = torch.tensor(colour, dtype=torch.uint8, device=rgb.device)
    return rgb


def paint_nonfinite(rgb: torch.Tensor, nan: torch.Tensor, posinf: torch.Tensor, neginf: torch.Tensor) -> torch.Tensor:
    """Paint -inf, then +inf, then NaN (NaN wins where a pixel stands for several)."""
    paint(rgb, neginf, NEGINF_COLOR)
    paint(rgb, posinf & ~nan, POSINF_COLOR)
    return paint(rgb, nan, NAN_COLOR)


def to_host(pictures: list[torch.Tensor], labels: list[str], steps_: list[tuple[int, int]], sources: list[tuple[int, int]]) -> list[Raster]:
    """The (h, w, 3) uint8 pictures as :class:`Raster` s: one copy to the host for all of them."""
    if not pictures:
        return []
    flat = (pictures[0].reshape(-1) if len(pictures) == 1 else torch.cat([p.reshape(-1) for p in pictures])).cpu().numpy()
    out: list[Raster] = []
    start = 0
    for p, label, step, source in zip(pictures, labels, steps_, sources):
        h, w = int(p.shape[0]), int(p.shape[1])
        out.append(Raster(width=w, height=h, rgb=flat[start : start + h * w * 3].tobytes(), label=label, step=step, source=source))
        start += h * w * 3
    return out


__all__ = ["LEVELS", "VIRIDIS_STOPS", "as_real", "block_any", "colour_scale", "lut", "paint", "paint_nonfinite", "steps", "tile_side", "to_host", "viridis"]
