"""The heatmap of a 2-D tensor (or of the first few 2-D slices of the last two dims), made on the
tensor's device: every k-th value coloured, every NaN/+inf/-inf marked in its own colour."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from tensormagic.engine.tensorinfo.pictures.grids import filled, heatmap_grid
from tensormagic.engine.tensorinfo.pictures.options import MAX_SLICES, PictureError
from tensormagic.engine.tensorinfo.pictures.raster import (
    as_real,
    block_any,
    colour_scale,
    paint_nonfinite,
    to_host,
    viridis,
)
from tensormagic.engine.tensorinfo.pictures.reports import HeatmapView
from tensormagic.engine.tensorinfo.statistics import ValueStats
from tensormagic.engine.tensorinfo.statistics.fused import PlaneGrid


def _slices(t: torch.Tensor) -> tuple[list[torch.Tensor], list[str], int]:
    """The first MAX_SLICES 2-D slices over the last two dims (views), their labels, how many."""
    lead = tuple(int(n) for n in t.shape[:-2])
    total = math.prod(lead)
    planes, labels = [], []
    for i in range(min(total, MAX_SLICES)):
        index = tuple(int(j) for j in np.unravel_index(i, lead)) if lead else ()
        planes.append(t[index] if index else t)
        labels.append("[" + ", ".join([str(j) for j in index] + [":", ":"]) + "]" if index else "")
    return planes, labels, total


#: Values searched for NaN/inf at a time (their masks: a byte each).
MARK_CHUNK = 2**22


def _marks(plane: torch.Tensor, step: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per pixel (block of step x step values): any NaN, any +inf, any -inf; searched a band of
    rows at a time (bands of whole blocks), so the masks stay small."""
    h, w = int(plane.shape[0]), int(plane.shape[1])
    sy = step[0]
    rows = max(sy, (MARK_CHUNK // max(w, 1)) // sy * sy)
    found: list[list[torch.Tensor]] = [[], [], []]
    for top in range(0, h, rows):
        band = plane[top : top + rows]
        nan = torch.isnan(band)
        if band.is_complex():  # |z| is inf when a part is: +inf
            pos, neg = torch.isinf(band) & ~nan, torch.zeros_like(nan)
        else:
            pos, neg = band == math.inf, band == -math.inf
        for j, mask in enumerate((nan, pos, neg)):
            found[j].append(block_any(mask, step))
    nan_, pos_, neg_ = (torch.cat(parts, dim=0) for parts in found)
    return nan_, pos_, neg_


def heatmap_view(t: torch.Tensor, stats: ValueStats | None, budget: int, grids: Mapping[PlaneGrid, torch.Tensor] | None = None, own_grid: bool = False) -> HeatmapView:
    """Colours from the finite min (dark purple) to the finite max (yellow) of the whole tensor.

    A pixel stands for a block of values (every k-th row and column is read for its colour);
    when the statistics found NaN/inf and the slices hold at most ``budget`` values, each block
    is searched whole, so a NaN anywhere in it paints its pixel (``marks_exact``).  ``grids``:
    the subsamples the statistics' pass copied out (see :mod:`.grids`); ``own_grid``: no view
    drawn after this one reads its grid, so the heatmap may use it up in place."""
    if t.dim() < 2 or min(t.shape[-2:]) == 0:
        raise PictureError(f"a heatmap needs 2 dims of at least 1 (the last two are drawn); this tensor has shape {tuple(t.shape)}")
    planes, labels, total = _slices(t)
    h, w = int(t.shape[-2]), int(t.shape[-1])
    step, grid = filled(heatmap_grid(tuple(int(n) for n in t.shape)), grids, h, w, len(planes))
    lo = hi = None
    if stats is not None and stats.min is not None and stats.max is not None:
        lo, hi = float(stats.min), float(stats.max)
        if t.is_complex():
            lo = 0.0 if lo < 0 else lo
    bad_anywhere = stats is None or not stats.exact or (stats.nan + stats.posinf + stats.neginf) > 0
    floating = t.is_floating_point() or t.is_complex()
    search = floating and bad_anywhere and len(planes) * h * w <= budget
    pictures: list[torch.Tensor] = []
    counts = []
    for i, plane in enumerate(planes):
        if grid is not None and own_grid and grid.dtype in (torch.float32, torch.float64):
            sub = grid[i]  # the pass's copy, nobody else's: nothing to gather or convert
        else:
            sub = as_real(grid[i] if grid is not None else plane[:: step[0], :: step[1]])  # a copy: another view may read the grid
        if lo is None and floating:
            finite = sub[torch.isfinite(sub)]
            if finite.numel():
                lo, hi = float(finite.min()), float(finite.max())
        rgb = colour_scale(sub, lo, hi, finite=not bad_anywhere, scratch=not (floating and bad_anywhere))  # sub is needed after only to find NaN/inf
        if not (floating and bad_anywhere):  # the statistics read every value: none is NaN/inf
            pictures.append(rgb)
            counts.append(torch.zeros(3, dtype=torch.int64, device=sub.device))
            continue
        if search:
            nan, pos, neg = _marks(plane, step)
        else:
            nan, pos, neg = torch.isnan(sub), sub == math.inf, sub == -math.inf
        pictures.append(paint_nonfinite(rgb, nan, pos, neg))
        counts.append(torch.stack([nan.sum(), (pos & ~nan).sum(), (neg & ~pos & ~nan).sum()]))
    tiles = to_host(pictures, labels, [step] * len(planes), [(h, w)] * len(planes))
    got = torch.stack(counts).sum(dim=0).cpu().tolist()
    notes = []
    if len(planes) < total:
        notes.append(f"the first {len(planes)} of {total:,} slices [..., :, :]")
    exact = search or not floating or (stats is not None and stats.exact and not bad_anywhere)
    return HeatmapView(
        tiles=tiles, total=total, lo=lo, hi=hi, colormap="viridis", legend=[*viridis()[::32], viridis()[-1]],
        nonfinite={"NaN": int(got[0]), "+inf": int(got[1]), "-inf": int(got[2])}, marks_exact=bool(exact), notes=notes,
    )


__all__ = ["heatmap_view"]
