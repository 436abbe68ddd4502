"""Tensors as pictures for ``%tensorinfo``: image, channel, heatmap and histogram views.

Everything is computed where the tensor lives: each picture reads every k-th row and column
(at most 512 x 512 pixels per view), is colour-mapped and clipped there, and only the small RGB
result is copied to the host, as bytes in the report (never a tensor).  Histogram counts are
true counts over every element up to the statistics' budget.  Modules, one job each:

- :mod:`.options`: which pictures a shape gets by default, the flags, ``--denorm``.
- :mod:`.reports`: the plain-value dataclasses (:class:`Pictures` and its views).
- :mod:`.raster`: the shared steps (strides, colour scale, non-finite colours, one copy out).
- :mod:`.images`: the image and channel views; :mod:`.heatmap`; :mod:`.histogram`.
- :mod:`.grids`: the subsample each view reads, which the statistics' pass can copy out for it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch

from tensormagic.engine.naming import describe_exception
from tensormagic.engine.tensorinfo.pictures.grids import grid_for, wanted_grids
from tensormagic.engine.tensorinfo.pictures.heatmap import heatmap_view
from tensormagic.engine.tensorinfo.pictures.histogram import histogram_view
from tensormagic.engine.tensorinfo.pictures.images import channel_view, image_view
from tensormagic.engine.tensorinfo.pictures.options import (
    NO_PICTURES,
    Kind,
    PictureError,
    PictureOptions,
    channel_layout,
    default_kinds,
    image_layout,
    options,
    parse_denorm,
)
from tensormagic.engine.tensorinfo.pictures.reports import (
    ChannelStats,
    ChannelView,
    HeatmapView,
    HistogramView,
    ImageView,
    Pictures,
    Raster,
)
from tensormagic.engine.tensorinfo.statistics import ValueStats
from tensormagic.engine.tensorinfo.statistics.fused import PlaneGrid


def _intensity(t: torch.Tensor, stats: ValueStats | None) -> bool:
    """Values that read as intensities: uint8, or floats whose finite values lie in [0, 1]."""
    if t.dtype == torch.uint8:
        return True
    if not t.is_floating_point() or stats is None or stats.min is None or stats.max is None:
        return False
    return float(stats.min) >= 0.0 and float(stats.max) <= 1.0


def _picture(kind: Kind, t: torch.Tensor, stats: ValueStats | None, budget: int, opts: PictureOptions, sample: torch.Tensor | None = None, grids: Mapping[PlaneGrid, torch.Tensor] | None = None, last_reader: bool = False) -> ImageView | ChannelView | HeatmapView | HistogramView | None:
    shape = tuple(int(n) for n in t.shape)
    if kind == "image":
        layout = image_layout(shape)
        if layout is None:
            raise PictureError(f"a tensor of shape {shape} is not an image: the image view takes (3, H, W), (H, W, 3), (N, 3, H, W), (1, H, W) or (H, W)")
        all_finite = stats is not None and stats.exact and not (stats.nan or stats.posinf or stats.neginf)
        return image_view(t, layout, opts.denorm, all_finite, grids)
    if kind == "channels":
        layout = channel_layout(shape)
        if layout is None:
            raise PictureError(f"a tensor of shape {shape} has no channels to show: the channel view takes (C, H, W), (N, C, H, W) or (H, W, 3)")
        return channel_view(t, layout, budget, grids)
    if kind == "heatmap":
        return heatmap_view(t, stats, budget, grids, own_grid=last_reader)
    if stats is None:
        raise PictureError("no histogram: the tensor's values have no statistics")
    return histogram_view(t, stats, budget, sample)


def _numeric(t: torch.Tensor) -> bool:
    return t.dtype == torch.bool or t.is_floating_point() or t.is_complex() or t.dtype.is_signed or t.dtype in (torch.uint8, torch.uint16, torch.uint32, torch.uint64)


def tensor_grids(t: torch.Tensor, opts: PictureOptions) -> list[PlaneGrid]:
    """The subsamples the pictures of ``t`` may read (see :mod:`.grids`): what the statistics'
    pass is asked to copy out for them."""
    if opts.kinds == ():
        return []
    return wanted_grids(tuple(int(n) for n in t.shape), t.numel(), opts, _numeric(t))


def tensor_pictures(t: torch.Tensor, stats: ValueStats | None, budget: int, opts: PictureOptions, sample: torch.Tensor | None = None, grids: Mapping[PlaneGrid, torch.Tensor] | None = None) -> Pictures:
    """The pictures of a dense strided tensor with values (``stats``: the report's statistics;
    ``sample`` and ``grids``: what the statistics' pass copied out for the histogram and the
    other views, see :mod:`.grids`).

    Pictures asked for explicitly that cannot be made raise :class:`PictureError`; a default
    one that fails becomes a note (a report never raises)."""
    shape = tuple(int(n) for n in t.shape)
    numeric = _numeric(t)
    if opts.explicit and t.numel() == 0 and opts.kinds:
        raise PictureError(f"an empty tensor (shape {shape}) has nothing to draw")
    kinds: tuple[Kind, ...] = opts.kinds if opts.kinds is not None else default_kinds(shape, t.numel(), _intensity(t, stats), numeric)
    if opts.denorm is not None and "image" not in kinds:
        kinds = ("image", *(k for k in kinds if k != "channels"))
    got: dict[str, object] = {}
    notes: list[str] = []
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        t = t.detach()
        for k, kind in enumerate(kinds):
            mine = grid_for(kind, shape)
            last_reader = mine is not None and all(grid_for(later, shape) != mine for later in kinds[k + 1 :])
            try:
                got[kind] = _picture(kind, t, stats, budget, opts, sample, grids, last_reader)
            except PictureError:
                if opts.explicit or (kind == "image" and opts.denorm is not None):
                    raise
                continue
            except Exception as exc:  # noqa: BLE001 - a default picture that fails: a note
                if opts.explicit:
                    raise PictureError(f"the {kind} view could not be made: {describe_exception(exc)}") from None
                notes.append(f"the {kind} view could not be made: {describe_exception(exc)}")
    if opts.kinds is None and "image" not in kinds and (layout := image_layout(shape)) is not None and len(shape) > 2 and t.is_floating_point() and min(layout.height, layout.width) >= 8:
        notes.append("shaped like an image, but its values are not in [0, 1]: --image draws it clipped, --denorm imagenet (or MEAN,STD) undoes a normalisation first")
    image, channels, heatmap, histogram = (got.get(k) for k in ("image", "channels", "heatmap", "histogram"))
    return Pictures(
        image=image if isinstance(image, ImageView) else None,
        channels=channels if isinstance(channels, ChannelView) else None,
        heatmap=heatmap if isinstance(heatmap, HeatmapView) else None,
        histogram=histogram if isinstance(histogram, HistogramView) else None,
        notes=notes,
    )


def safe_pictures(t: torch.Tensor, stats: ValueStats | None, budget: int, opts: PictureOptions, sample: torch.Tensor | None = None, grids: Mapping[PlaneGrid, torch.Tensor] | None = None) -> Pictures:
    """:func:`tensor_pictures` that never raises for default pictures (an exotic tensor that
    refuses gets a note); pictures asked for raise :class:`PictureError` (one line)."""
    try:
        return tensor_pictures(t, stats, budget, opts, sample, grids)
    except PictureError:
        raise
    except Exception as exc:  # noqa: BLE001 - a report never raises
        if opts.explicit or opts.denorm is not None:
            raise PictureError(f"the pictures could not be made: {describe_exception(exc)}") from None
        return Pictures(notes=[f"pictures unavailable: {describe_exception(exc)}"])


__all__ = [
    "NO_PICTURES",
    "ChannelStats",
    "ChannelView",
    "HeatmapView",
    "HistogramView",
    "ImageView",
    "PictureError",
    "PictureOptions",
    "Pictures",
    "Raster",
    "options",
    "parse_denorm",
    "safe_pictures",
    "tensor_grids",
    "tensor_pictures",
]
