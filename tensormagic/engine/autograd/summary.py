"""Gradients summarised without keeping them: a copy of a small one, a few numbers of a big one.

:func:`summarise` runs inside backward hooks, so it must be cheap, never sync a device (big
gradients on a GPU give 0-d device tensors, read after the cell), never emit a warning and never
run user code: tensor subclasses (their ``__torch_dispatch__`` is user code), meta and fake
tensors are described by their metadata only; a DTensor is summarised from its local shard,
labelled so (reading it whole would communicate).  :meth:`GradSummary.plain` turns it into
Python values once the cell is over.
"""

from __future__ import annotations

import math
import operator
import weakref
from dataclasses import dataclass
from typing import Any

import torch

from tensormagic.engine.tensorinfo.statistics import cpu_moments

#: Tensors up to this many elements have their gradient kept as values; bigger ones as statistics.
SMALL_GRAD = 64


@dataclass(slots=True, kw_only=True)
class GradSummary:
    """A gradient as small tensors: the values (small) or statistics (big), never the gradient."""

    shape: list[int] | None
    dtype: str
    values: torch.Tensor | None = None  # a copy, small tensors only
    stats: tuple[Any, ...] | None = None  # (sum of squares, min, max, sum, finite count, nan, inf): 0-d tensors or numbers
    complex: bool = False
    note: str | None = None  # why the values were not read
    scope: str | None = None  # "local shard" for a DTensor
    source: Any = None  # weakref to the tensor summarised, and its version then (see is_of)
    version: int = -1
    after_cell: bool = False  # summarised once the cell was over (see is_of)
    _plain: dict[str, Any] | None = None  # plain(), made once

    def is_of(self, t: torch.Tensor | None) -> bool:
        """This summary describes ``t`` as it is now: the very tensor, unchanged since, and read
        after the cell (a write through ``.data`` or ``.numpy()`` in the cell bumps no version)."""
        return self.after_cell and t is not None and self.source is not None and self.source() is t and t._version == self.version

    def plain(self) -> dict[str, Any]:
        """``{shape, dtype, value|None, norm, min, max, mean, nan, inf, note, scope}`` as Python values."""
        if self._plain is None:
            self._plain = self._make_plain()
        return dict(self._plain)

    def _make_plain(self) -> dict[str, Any]:
        out: dict[str, Any] = {"shape": self.shape, "dtype": self.dtype, "value": None, "norm": None, "min": None, "max": None, "mean": None, "nan": 0, "inf": 0}
        if self.note:
            out["note"] = self.note
        if self.scope:
            out["scope"] = self.scope
        if self.values is not None:
            out.update(_plain_values(self.values))
        elif self.stats is not None:
            sq, lo, hi, total, count, nan, inf = (_num(v) for v in self.stats)
            out.update(norm=math.sqrt(sq) if sq >= 0 else math.nan, nan=int(nan), inf=int(inf))
            if not self.complex and count:
                out.update(min=lo, max=hi, mean=total / count)
        return out


def _num(v: Any) -> float:
    return float(v.item()) if isinstance(v, torch.Tensor) else float(v)


def _plain_values(v: torch.Tensor) -> dict[str, Any]:
    """Values, norm, finite min/max/mean and NaN/inf counts of a small tensor, in Python (a few
    dozen numbers: Python is faster here than a dozen torch ops)."""
    v = v.detach().cpu()
    out: dict[str, Any] = {}
    if v.is_complex():
        c = v.to(torch.complex128)
        value: Any = c.tolist() if c.dim() else complex(c.item())
        flat = _flatten(value)
        out["value"] = value
        out["norm"] = math.sqrt(sum(abs(z) ** 2 for z in flat))
        out["nan"] = sum(1 for z in flat if math.isnan(z.real) or math.isnan(z.imag))
        out["inf"] = sum(1 for z in flat if (math.isinf(z.real) or math.isinf(z.imag)) and not (math.isnan(z.real) or math.isnan(z.imag)))
        return out
    w = v.to(torch.float64)
    value = w.tolist() if w.dim() else float(w.item())
    flat = w.reshape(-1).tolist() if w.dim() > 1 else (value if w.dim() else [value])
    finite = list(filter(math.isfinite, flat))  # (map and filter with C functions: no Python step per value)
    out["value"] = value
    out["norm"] = math.sqrt(math.fsum(map(operator.mul, flat, flat))) if flat else 0.0
    out["min"] = min(finite) if finite else None
    out["max"] = max(finite) if finite else None
    out["mean"] = math.fsum(finite) / len(finite) if finite else None
    all_finite = len(finite) == len(flat)
    out["nan"] = 0 if all_finite else sum(map(math.isnan, flat))
    out["inf"] = 0 if all_finite else sum(map(math.isinf, flat))
    return out


def _flatten(value: Any) -> list[Any]:
    if not isinstance(value, list):
        return [value]
    out: list[Any] = []
    stack = [iter(value)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                stack.append(iter(x))
                break
            out.append(x)
        else:
            stack.pop()
    return out


def _shape(t: torch.Tensor) -> list[int] | None:
    try:
        return [int(s) for s in t.shape]
    except Exception:  # noqa: BLE001 - nested (jagged) tensors have no single shape
        return None


def _unreadable(t: torch.Tensor) -> str | None:
    """Why the values of ``t`` are not read (None: they can be)."""
    if type(t) not in (torch.Tensor, torch.nn.Parameter):
        return f"values not read: a {type(t).__name__} (a tensor subclass; reading it would run its own code)"
    if t.is_nested:
        return "values not read: a nested tensor"
    if t.device.type == "meta":
        return "a meta tensor has no values"
    return None


def local_shard(t: torch.Tensor) -> torch.Tensor | None:
    """The local shard of a DTensor (no communication), else None."""
    if type(t).__name__ == "DTensor" and type(t).__module__.startswith("torch.distributed"):
        try:
            return t.to_local()  # type: ignore[no-any-return, attr-defined]
        except Exception:  # noqa: BLE001
            return None
    return None


def _placement(p: Any) -> str:
    from tensormagic.engine.sharding.layout import placement_text

    try:
        return placement_text(p)
    except Exception:  # noqa: BLE001 - a placement torch added later
        return str(p)


def summarise(grad: torch.Tensor | None) -> GradSummary | None:
    """Summarise a gradient without keeping it (called inside backward hooks)."""
    if grad is None:
        return None
    with torch.no_grad(), torch._C.DisableTorchFunction():
        scope = None
        shard = local_shard(grad)
        if shard is not None:
            placed = ", ".join(_placement(p) for p in getattr(grad, "placements", ()))
            grad, scope = shard, f"local shard ({placed})" if placed else "local shard"
        dtype = str(grad.dtype)
        shape = _shape(grad)
        why = _unreadable(grad)
        if why is not None:
            return GradSummary(shape=shape, dtype=dtype, note=why, scope=scope)
        g = grad.detach()
        if g.layout != torch.strided:  # sparse: its stored values (to_dense could be huge)
            try:
                g = g.coalesce().values() if g.is_sparse else g.values()
            except Exception:  # noqa: BLE001
                return GradSummary(shape=shape, dtype=dtype, note=f"values not read: a {g.layout} tensor", scope=scope)
        source, version = (weakref.ref(grad), grad._version) if scope is None else (None, -1)
        if g.numel() <= SMALL_GRAD:
            return GradSummary(shape=shape, dtype=dtype, values=g.clone(), complex=g.is_complex(), scope=scope, source=source, version=version)
        return GradSummary(shape=shape, dtype=dtype, stats=_stats(g), complex=g.is_complex(), scope=scope, source=source, version=version)


def _stats(g: torch.Tensor) -> tuple[Any, ...]:
    """(sum of squares, min, max, sum, finite count, nan, inf), without a device sync."""
    if g.is_complex():
        g = g.abs()
    elif not g.is_floating_point():
        g = g.to(torch.float64)
    if g.dtype in (torch.float16, torch.bfloat16) or "float8" in str(g.dtype):
        g = g.float()
    n = g.numel()
    got = cpu_moments(g.reshape(-1)) if g.is_contiguous() else None
    if got is not None and all(math.isfinite(v) for v in got[:4]):
        lo, hi, s1, s2, _ = got  # one pass of the C helper on the CPU: microseconds, not four ops
        return (s2, lo, hi, s1, n, 0, 0)
    sq = torch.linalg.vector_norm(g, dtype=torch.float64).square()
    if g.device.type == "cpu" and math.isfinite(float(sq)):
        tlo, thi = torch.aminmax(g)
        return (sq, tlo, thi, g.sum(dtype=torch.float64), n, 0, 0)
    finite = torch.isfinite(g)
    nan = torch.isnan(g).sum()
    count = finite.sum()
    big = torch.finfo(g.dtype).max
    tlo = torch.where(finite, g, torch.full((), big, dtype=g.dtype, device=g.device)).min()
    thi = torch.where(finite, g, torch.full((), -big, dtype=g.dtype, device=g.device)).max()
    total = torch.where(finite, g, torch.zeros((), dtype=g.dtype, device=g.device)).sum(dtype=torch.float64)
    return (sq, tlo, thi, total, count, nan, n - count - nan)


def difference(after: GradSummary | None, before: GradSummary | None) -> Any:
    """``after - before`` of two small summaries as Python values (None unless both are small
    and of one shape); complex stays complex, with no cast."""
    if after is None or after.values is None:
        return None
    a = after.values.detach().cpu()
    if before is None:
        return _plain_values(a)["value"]
    if before.values is None or list(before.values.shape) != list(a.shape):
        return None
    b = before.values.detach().cpu()
    wide = torch.complex128 if (a.is_complex() or b.is_complex()) else torch.float64
    return _plain_values(a.to(wide) - b.to(wide))["value"]


__all__ = ["SMALL_GRAD", "GradSummary", "difference", "local_shard", "summarise"]
