"""Statistics of what a module call returned: min, max, mean, std, NaN/inf and exact zeros.

Each output tensor goes through ``%tensorinfo``'s own statistics (exact up to the budget, a
fixed-seed sample above it, labelled); several outputs are pooled into one row.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils._pytree import tree_flatten

from tensormagic.engine.layers.report import ActivationStats
from tensormagic.engine.naming import is_tensor
from tensormagic.engine.tensorinfo.statistics import ValueStats, tensor_stats

#: Elements of one output above which its statistics come from a sample (``--budget`` sets it).
DEFAULT_LAYER_BUDGET = 2**22


def output_tensors(value: Any) -> list[torch.Tensor]:
    """Every tensor in a (nested) output, in order."""
    return [leaf for leaf in tree_flatten(value)[0] if is_tensor(leaf)]


def with_values(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The dense strided tensors that hold readable values (no meta, nested or sparse ones)."""
    out = []
    for t in tensors:
        try:
            if t.layout == torch.strided and not t.is_nested and t.device.type != "meta":
                out.append(t)
        except Exception:  # noqa: BLE001 - a subclass that refuses: no statistics
            continue
    return out


def _stats(t: torch.Tensor, budget: int) -> ValueStats | None:
    if t.is_complex() or t.numel() == 0:
        return None
    try:
        return tensor_stats(t.detach(), budget)
    except Exception:  # noqa: BLE001 - an exotic output: no statistics, never an error
        return None


def has_nonfinite(tensors: list[torch.Tensor]) -> bool:
    """Does any floating tensor hold a NaN or an inf (read exactly, never from a sample)?"""
    with torch.no_grad():
        for t in tensors:
            if (t.is_floating_point() or t.is_complex()) and t.numel() and not bool(torch.isfinite(t).all()):
                return True
    return False


def activation_stats(tensors: list[torch.Tensor], budget: int = DEFAULT_LAYER_BUDGET) -> ActivationStats | None:
    """Pooled statistics of ``tensors`` (None when none of them has values)."""
    parts = [(t, s) for t in tensors if (s := _stats(t, budget)) is not None]
    if not parts:
        return None
    lo = [float(s.min) for _, s in parts if s.min is not None]
    hi = [float(s.max) for _, s in parts if s.max is not None]
    nan = sum(s.nan for _, s in parts)
    inf = sum(s.posinf + s.neginf for _, s in parts)
    read = sum((s.sample_size if not s.exact and s.sample_size else s.count) for _, s in parts)
    zeros = sum(s.zeros for _, s in parts)
    # pooled mean and sample std over the finite values read
    n_tot = 0
    s1 = 0.0
    for _, s in parts:
        n = (s.sample_size if not s.exact and s.sample_size else s.count) - s.nan - s.posinf - s.neginf
        if s.mean is not None and n > 0:
            n_tot += n
            s1 += s.mean * n
    mean = s1 / n_tot if n_tot else None
    std = None
    if mean is not None and n_tot > 1:
        m2 = 0.0
        for _, s in parts:
            n = (s.sample_size if not s.exact and s.sample_size else s.count) - s.nan - s.posinf - s.neginf
            if s.mean is not None and n > 0:
                m2 += (s.std or 0.0) ** 2 * (n - 1) + n * (s.mean - mean) ** 2
        std = math.sqrt(max(m2 / (n_tot - 1), 0.0))
    return ActivationStats(
        min=min(lo) if lo else None,
        max=max(hi) if hi else None,
        mean=mean,
        std=std,
        nan=nan,
        inf=inf,
        zero_fraction=zeros / read if read else None,
        exact=all(s.exact for _, s in parts),
        values=sum(s.count for _, s in parts),
    )


def output_bytes(tensors: list[torch.Tensor]) -> int:
    """Logical bytes of the output tensors."""
    total = 0
    for t in tensors:
        try:
            total += int(t.numel() * t.element_size())
        except Exception:  # noqa: BLE001
            continue
    return total


__all__ = ["DEFAULT_LAYER_BUDGET", "activation_stats", "has_nonfinite", "output_bytes", "output_tensors", "with_values"]
