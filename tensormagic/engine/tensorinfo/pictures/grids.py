"""Which subsample each picture reads, so that the statistics' pass can copy it out for them.

A heatmap, an image view or a channel view reads every k-th row and column of a few (H, W)
planes of the tensor's last two dims: a :class:`~tensormagic.engine.tensorinfo.statistics.fused.PlaneGrid`.
:func:`wanted_grids` lists the grids of the pictures a tensor may get (before its statistics
say which it gets); the C pass fills those it can while it reads the values for the statistics
(:func:`~tensormagic.engine.tensorinfo.statistics.stats_sample_grids`), and each view takes its
grid from there or, where it was not filled, reads the tensor itself: the same values either way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from tensormagic.engine.tensorinfo.pictures.options import (
    MAX_CHANNELS,
    MAX_IMAGES,
    MAX_SLICES,
    PictureOptions,
    channel_layout,
    default_kinds,
    image_layout,
)
from tensormagic.engine.tensorinfo.pictures.raster import steps, tile_side
from tensormagic.engine.tensorinfo.statistics.fused import PlaneGrid


def heatmap_grid(shape: tuple[int, ...]) -> PlaneGrid | None:
    """The first MAX_SLICES planes of the last two dims, at the heatmap's step."""
    if len(shape) < 2 or min(shape[-2:]) == 0:
        return None
    planes = min(math.prod(shape[:-2]), MAX_SLICES)
    h, w = shape[-2:]
    return PlaneGrid(planes=planes, height=h, width=w, step=steps(h, w, tile_side(planes))) if planes else None


def image_grid(shape: tuple[int, ...]) -> PlaneGrid | None:
    """The channel planes of the first MAX_IMAGES images, at the image grid's step (None for a
    channels-last image: its planes are not the last two dims)."""
    layout = image_layout(shape)
    if layout is None or layout.height == 0 or layout.width == 0:
        return None
    if layout.channel_dim is None:  # (H, W)
        k, planes = 1, 1
    elif layout.batch_dim is None:
        if layout.channel_dim != 0:
            return None
        k, planes = 1, layout.channels
    else:
        k = min(shape[0], MAX_IMAGES)
        planes = k * layout.channels
    if planes == 0:
        return None
    return PlaneGrid(planes=planes, height=layout.height, width=layout.width, step=steps(layout.height, layout.width, tile_side(k)))


def channel_grid(shape: tuple[int, ...]) -> PlaneGrid | None:
    """The first MAX_CHANNELS channel planes of the first item, at the channel view's step."""
    layout = channel_layout(shape)
    if layout is None or layout.channel_dim != (1 if layout.batch_dim is not None else 0) or min(layout.height, layout.width) == 0:
        return None
    if layout.batch_dim is not None and shape[0] == 0:
        return None
    k = min(layout.channels, MAX_CHANNELS)
    return PlaneGrid(planes=k, height=layout.height, width=layout.width, step=steps(layout.height, layout.width, tile_side(k))) if k else None


def filled(spec: PlaneGrid | None, grids: Mapping[PlaneGrid, torch.Tensor] | None, height: int, width: int, count: int) -> tuple[tuple[int, int], torch.Tensor | None]:
    """A view's step and the grid the statistics' pass filled for it (None: the view reads the
    tensor itself): ``spec``'s step, else the step of ``count`` pictures of ``height`` x ``width``."""
    if spec is None:
        return steps(height, width, tile_side(count)), None
    return spec.step, grids.get(spec) if grids else None


def grid_for(kind: str, shape: tuple[int, ...]) -> PlaneGrid | None:
    """The grid the view ``kind`` of a tensor of this shape reads (None: none, or a histogram)."""
    make = {"image": image_grid, "heatmap": heatmap_grid, "channels": channel_grid}.get(kind)
    return make(shape) if make is not None else None


def wanted_grids(shape: tuple[int, ...], numel: int, opts: PictureOptions, numeric: bool) -> list[PlaneGrid]:
    """The grids of every picture ``opts`` may draw of a tensor of this shape: the kinds asked
    for, else the defaults whichever way the statistics turn out (values in [0, 1] or not)."""
    if opts.kinds is not None:
        kinds = set(opts.kinds)
    else:
        kinds = set(default_kinds(shape, numel, True, numeric)) | set(default_kinds(shape, numel, False, numeric))
    if opts.denorm is not None:
        kinds.add("image")
    out = []
    for kind in ("image", "heatmap", "channels"):
        grid = grid_for(kind, shape) if kind in kinds else None
        if grid is not None and grid not in out:
            out.append(grid)
    return out


__all__ = ["channel_grid", "filled", "grid_for", "heatmap_grid", "image_grid", "wanted_grids"]
