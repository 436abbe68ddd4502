"""The one line automatic display shows for a tensor, array or module.

``tensor (8, 3, 32, 32) float32 cpu · range [-4.21, 4.05] · mean 0.00131 ± 0.998 · no NaN/inf ·
requires_grad (leaf)``: shape, dtype, device, range, mean ± std, NaN/inf counts and grad state,
from the same report ``%tensorinfo`` builds (statistics from a sample above the budget, said so).
"""

from __future__ import annotations

from tensormagic.engine.tensorinfo import ModuleInfo, TensorInfo
from tensormagic.render.format import fmt_bytes, fmt_shape, short_type, shown_std


def num(x: object) -> str:
    """Four significant digits for floats, exact integers and booleans."""
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}" if abs(x) < 10**15 else f"{x:.4g}"
    if isinstance(x, float):
        return f"{x:.4g}"
    return "-" if x is None else str(x)


def _kind(info: TensorInfo) -> str:
    if info.type == "torch.Tensor":
        return "tensor"
    if info.type == "numpy.ndarray":
        return "ndarray"
    return short_type(info.type)


def _grad(info: TensorInfo) -> str | None:
    if info.requires_grad is None:
        return None
    if not info.requires_grad:
        return "requires_grad=False"
    if info.is_leaf:
        return "requires_grad (leaf" + (", .grad set)" if info.grad else ")")
    return f"requires_grad ({info.grad_fn})" if info.grad_fn else "requires_grad"


def tensor_line(info: TensorInfo) -> str:
    """The line of an array or tensor."""
    dtype = info.dtype.removeprefix("torch.")
    head = f"{_kind(info)} {fmt_shape(info.shape) if info.shape is not None else '?'} {dtype}"
    if info.type != "numpy.ndarray" or info.device != "cpu":
        head += f" {info.device}"
    parts = [head]
    sh = info.sharding
    if sh is not None:  # a DTensor: its layout, and whose values the numbers are
        parts.append(f"{', '.join(sh.placements)}, local {fmt_shape(sh.local_shape)} on rank {sh.rank}")
    s = info.stats
    if info.numel == 0:
        parts.append("empty")
    elif s is None:
        parts.append(info.stats_note or "no values to read")
    else:
        over = "|z| " if "|z|" in s.over else ""
        if s.scope in ("local", "partial"):
            over = ("local shard " if s.scope == "local" else "partial values' ") + over
        if s.min is not None and s.min == s.max and s.count == 1:
            parts.append(f"{over}value {num(s.min)}")
        elif s.min is not None:
            parts.append(f"{over}range [{num(s.min)}, {num(s.max)}]")
        if s.mean is not None and s.count > 1:
            _, std = shown_std(s, numpy=info.type.startswith("numpy"))
            parts.append(f"mean {num(s.mean)} ± {num(std)}" if std is not None else f"mean {num(s.mean)}")
        bad = [f"{n:,} {label}" for n, label in ((s.nan, "NaN"), (s.posinf, "+inf"), (s.neginf, "-inf")) if n]
        parts.append(", ".join(bad) + "!" if bad else "no NaN/inf")
        if s.masked:
            parts.append(f"{s.masked:,} masked")
        if not s.exact:
            parts.append(f"statistics from a sample of {s.sample_size or 0:,} of {s.count:,} values (--budget)")
    grad = _grad(info)
    if grad:
        parts.append(grad)
    return " · ".join(parts)


def module_line(info: ModuleInfo) -> str:
    """The line of a module."""
    parts = [short_type(info.type), f"{info.parameters:,} parameters" + (f" ({info.trainable_parameters:,} trainable)" if info.trainable_parameters != info.parameters else "")]
    if info.uninitialized:
        parts.append(f"{info.uninitialized} uninitialized (lazy)")
    parts.append(fmt_bytes(info.parameter_bytes + info.buffer_bytes, exact=False))
    if info.dtypes:
        parts.append(", ".join(d.removeprefix("torch.") for d in info.dtypes))
    if info.devices:
        parts.append(", ".join(info.devices))
    return " · ".join(parts)


def summary_line(info: TensorInfo | ModuleInfo) -> str:
    """The line of any report automatic display shows."""
    return module_line(info) if isinstance(info, ModuleInfo) else tensor_line(info)


def nonfinite(info: TensorInfo | ModuleInfo) -> bool:
    """Does the line report NaN/inf?"""
    s = getattr(info, "stats", None)
    return bool(s is not None and (s.nan or s.posinf or s.neginf))


__all__ = ["module_line", "nonfinite", "num", "summary_line", "tensor_line"]
