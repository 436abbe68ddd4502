"""The image view and the channel view, reduced on the tensor's device before any copy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch

from tensormagic.engine.tensorinfo.pictures.grids import channel_grid, filled, image_grid
from tensormagic.engine.tensorinfo.pictures.options import (
    MAX_CHANNELS,
    MAX_IMAGES,
    Denorm,
    Layout,
    PictureError,
)
from tensormagic.engine.tensorinfo.pictures.raster import (
    as_real,
    colour_scale,
    paint,
    paint_nonfinite,
    to_host,
)
from tensormagic.engine.tensorinfo.pictures.reports import (
    NAN_COLOR,
    ChannelStats,
    ChannelView,
    ImageView,
)
from tensormagic.engine.tensorinfo.statistics import tensor_stats
from tensormagic.engine.tensorinfo.statistics.fused import PlaneGrid


def _images(t: torch.Tensor, layout: Layout, most: int) -> torch.Tensor:
    """A (k, C, H, W) view of the first ``most`` images (C = 1 for grey)."""
    if layout.channel_dim is None:  # (H, W)
        return t.unsqueeze(0).unsqueeze(0)
    if layout.batch_dim is None:
        single = t if layout.channel_dim == 0 else t.permute(2, 0, 1)
        return single.unsqueeze(0)
    return t[:most]


def image_view(t: torch.Tensor, layout: Layout, denorm: Denorm | None, all_finite: bool = False, grids: Mapping[PlaneGrid, torch.Tensor] | None = None) -> ImageView:
    """The first few images of ``t`` (laid out as ``layout``) as RGB or grey pixels.

    Floats are read as intensities in [0, 1], integers in [0, 255] (bool: 0 or 1), after
    ``denorm`` (``x * std + mean`` per channel); values outside are clipped and counted.
    ``all_finite``: the statistics read every value and found no NaN/inf (nothing to mark);
    ``grids``: the subsamples the statistics' pass copied out (see :mod:`.grids`)."""
    total = 1 if layout.batch_dim is None else int(t.shape[layout.batch_dim])
    if total == 0 or layout.height == 0 or layout.width == 0:
        raise PictureError(f"the image view needs at least one pixel; this tensor has shape {tuple(t.shape)}")
    imgs = _images(t, layout, MAX_IMAGES)
    k = int(imgs.shape[0])
    step, grid = filled(image_grid(tuple(int(n) for n in t.shape)), grids, layout.height, layout.width, k)
    picked = grid.view(k, layout.channels, *grid.shape[1:]) if grid is not None else imgs[:, :, :: step[0], :: step[1]]
    # every k-th row and column, gathered at once into (k, h, w, C): the pixel order of a PNG
    sub = as_real(picked.permute(0, 2, 3, 1))
    integer = not (t.is_floating_point() or t.is_complex())
    if integer and t.dtype != torch.bool:
        sub = sub / 255.0
        scale = "[0, 255]"
    else:
        scale = "[0, 1]"
    if denorm is not None:
        mean, std = denorm.for_channels(layout.channels)
        shape = (1, 1, 1, layout.channels)
        sub = sub * torch.tensor(std, dtype=sub.dtype, device=sub.device).view(shape) + torch.tensor(mean, dtype=sub.dtype, device=sub.device).view(shape)
        scale = f"[0, 1] after x * std + mean ({denorm.name})"
    if all_finite:
        bad_pixel = None
        lo, hi = torch.aminmax(sub)
        inside = bool((lo >= 0) & (hi <= 1))  # one small sync; the usual image needs no mask
        counts = [0 if inside else int(((sub < 0) | (sub > 1)).sum()), sub.numel(), 0]
        rgb = sub.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)  # sub is the picture's own copy
    else:
        finite = torch.isfinite(sub)
        bad_pixel = (~finite).any(dim=-1)  # (k, h, w)
        outside = finite & ((sub < 0) | (sub > 1))
        counts = torch.stack([outside.sum(), finite.sum(), bad_pixel.sum()]).cpu().tolist()
        rgb = torch.nan_to_num(sub, nan=0.0, posinf=1.0, neginf=0.0).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    if layout.channels == 1:
        rgb = rgb.expand(k, rgb.shape[1], rgb.shape[2], 3).contiguous()  # (k, h, w, 3)
    if bad_pixel is not None:
        paint(rgb, bad_pixel, NAN_COLOR)
    labels = [f"[{i}]" for i in range(k)] if layout.batch_dim is not None else ["image"]
    tiles = to_host(list(rgb.unbind(0)), labels, [step] * k, [(layout.height, layout.width)] * k)
    notes = []
    if k < total:
        notes.append(f"the first {k} of {total:,} images")
    mode: Literal["RGB", "grey"] = "grey" if layout.channels == 1 else "RGB"
    return ImageView(mode=mode, layout=layout.name, tiles=tiles, total=total, scale=scale, denorm=denorm.name if denorm else None, clipped=int(counts[0]), shown=int(counts[1]), nan=int(counts[2]), notes=notes)


def _channel_stats(plane: torch.Tensor, budget: int) -> ChannelStats:
    s = tensor_stats(plane, budget)

    def number(v: float | bool | None) -> float | None:
        return None if v is None else float(v)

    return ChannelStats(min=number(s.min), max=number(s.max), mean=s.mean, std=s.std, nan=int(s.nan), exact=s.exact)


def channel_view(t: torch.Tensor, layout: Layout, budget: int, grids: Mapping[PlaneGrid, torch.Tensor] | None = None) -> ChannelView:
    """One picture per channel of the first item (at most MAX_CHANNELS), each coloured from its
    own min to its own max, with that channel's own statistics (exact up to ``budget``)."""
    if layout.channel_dim is None or layout.channels == 0:
        raise PictureError(f"the channel view needs a channel dim: (C, H, W), (N, C, H, W) or (H, W, 3), not {tuple(t.shape)}")
    first = t[0] if layout.batch_dim is not None else t
    if layout.batch_dim is not None and int(t.shape[0]) == 0:
        raise PictureError(f"the channel view needs at least one item; this tensor has shape {tuple(t.shape)}")
    cdim = layout.channel_dim - (1 if layout.batch_dim is not None else 0)
    k = min(layout.channels, MAX_CHANNELS)
    step, grid = filled(channel_grid(tuple(int(n) for n in t.shape)), grids, layout.height, layout.width, k)
    stats: list[ChannelStats] = []
    pictures: list[torch.Tensor] = []
    for c in range(k):
        plane = first.select(cdim, c)
        s = _channel_stats(plane, budget)
        stats.append(s)
        sub = as_real(grid[c] if grid is not None else plane[:: step[0], :: step[1]])
        rgb = colour_scale(sub, s.min, s.max)
        pictures.append(paint_nonfinite(rgb, torch.isnan(sub), sub == float("inf"), sub == float("-inf")))
    tiles = to_host(pictures, [f"channel {c}" for c in range(k)], [step] * k, [(layout.height, layout.width)] * k)
    notes = []
    if layout.batch_dim is not None:
        notes.append(f"item [0] of {int(t.shape[0]):,}")
    if k < layout.channels:
        notes.append(f"the first {k} of {layout.channels:,} channels")
    return ChannelView(layout=layout.name, tiles=tiles, stats=stats, total=layout.channels, notes=notes)


__all__ = ["channel_view", "image_view"]
