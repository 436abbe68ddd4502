"""A small picture of a tensor, array or module, as plain numbers (the renderer draws it).

- ``image``: a tensor that looks like an image (C, H, W) with 1, 3 or 4 channels, or (H, W, 3|4)
  with values in [0, 1] or uint8: its pixels, every k-th row and column.
- ``heatmap``: any other 2-D (or more: its first 2-D slice) array: every k-th value.
- ``histogram``: 1-D and other arrays: the counts of ``%tensorinfo``'s histogram.
- ``bars``: a module: the parameters of each direct child.

Only a strided view with at most ``side`` x ``side`` elements is ever read (where the data
lives; then copied to the host), so a picture of a 1e8-element tensor costs a few kilobytes.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tensormagic.engine.naming import is_module, is_ndarray, is_tensor
from tensormagic.engine.sharding.detect import as_dtensor

#: The most rows and columns a picture reads.
SIDE = 48


@dataclass
class Preview:
    """``values``: rows of numbers (image: rows of channel tuples, in [0, 1]); ``labels`` for bars."""

    kind: str  # "image" | "heatmap" | "histogram" | "bars"
    values: list[Any]
    lo: float | None = None
    hi: float | None = None
    step: tuple[int, int] = (1, 1)  # every k-th row, column read
    labels: list[str] = field(default_factory=list)
    note: str = ""


def _as_tensor(obj: Any) -> torch.Tensor | None:
    """A dense strided tensor with values viewing ``obj`` (no copy), or None."""
    try:
        if is_tensor(obj):
            dt = as_dtensor(obj)  # a DTensor: its local shard (slicing the DTensor could communicate)
            t = dt.to_local().detach() if dt is not None else obj.detach()
            if t.layout != torch.strided or t.is_nested or t.device.type == "meta" or t.is_quantized:
                return None
            dense: torch.Tensor = t
            return dense
        if is_ndarray(obj) and not isinstance(obj, np.ma.MaskedArray) and obj.dtype.kind in "biuf" and obj.dtype.isnative:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a read-only array: only read here
                return torch.from_numpy(obj)
    except Exception:  # noqa: BLE001 - a tensor subclass that refuses: no picture
        return None
    return None


def _small(t: torch.Tensor, side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Every k-th row and column of a 2-D (or 2-D + channels) view, as float64 on the host."""
    h, w = t.shape[0], t.shape[1]
    sy, sx = max(1, math.ceil(h / side)), max(1, math.ceil(w / side))
    view = t[::sy, ::sx]
    if view.is_complex():
        view = view.abs()
    return view.to(device="cpu", dtype=torch.float64).numpy(), (sy, sx)


def _image_layout(t: torch.Tensor) -> torch.Tensor | None:
    """(H, W, C) view of an image-like tensor, else None."""
    if t.dim() == 3 and t.shape[0] in (1, 3, 4) and t.shape[1] >= 4 and t.shape[2] >= 4:
        return t.permute(1, 2, 0)
    if t.dim() == 3 and t.shape[2] in (3, 4) and t.shape[0] >= 4 and t.shape[1] >= 4:
        return t
    return None


def tensor_preview(obj: Any, histogram: Any = None, side: int = SIDE) -> Preview | None:
    """The picture of an array or tensor (None when it has no values to draw)."""
    t = _as_tensor(obj)
    if t is not None and t.numel() > 0 and t.dim() >= 2 and t.dtype != torch.bool:
        with torch.no_grad():
            image = _image_layout(t)
            if image is not None:
                pixels, step = _small(image, side)
                scale = 255.0 if t.dtype == torch.uint8 else 1.0
                pixels = pixels / scale
                finite = pixels[np.isfinite(pixels)]
                if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
                    if pixels.shape[2] == 1:
                        pixels = np.repeat(pixels, 3, axis=2)
                    return Preview("image", np.nan_to_num(pixels, nan=0.0).tolist(), 0.0, 1.0, step, note="this rank's local shard" if as_dtensor(obj) is not None else "")
            plane = t
            while plane.dim() > 2:
                plane = plane[0]
            values, step = _small(plane, side)
            finite = values[np.isfinite(values)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (None, None)
            note = "" if t.dim() == 2 else f"the first {plane.shape[0]}x{plane.shape[1]} slice"
            if as_dtensor(obj) is not None:
                note = "this rank's local shard" + (f", {note}" if note else "")
            return Preview("heatmap", values.tolist(), lo, hi, step, note=note)
    if histogram is not None and len(histogram.counts) > 1 and sum(histogram.counts):
        return Preview("histogram", [float(c) for c in histogram.counts], float(histogram.edges[0]), float(histogram.edges[-1]))
    return None


def module_preview(module: Any, most: int = 24) -> Preview | None:
    """Bars of the parameters of each direct child (each parameter once)."""
    if not is_module(module):
        return None
    seen: set[int] = set()
    labels, values = [], []
    for name, child in list(module.named_children())[:most]:
        n = 0
        for p in child.parameters():
            if id(p) not in seen and not isinstance(p, torch.nn.parameter.UninitializedParameter):
                seen.add(id(p))
                n += p.numel()
        labels.append(name)
        values.append(float(n))
    if len(values) < 2 or not any(values):
        return None
    return Preview("bars", values, 0.0, max(values), labels=labels)


__all__ = ["SIDE", "Preview", "module_preview", "tensor_preview"]
