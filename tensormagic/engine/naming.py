"""How the engine names and describes things: type names, "is an array", exceptions, sizes.

One place for the small helpers every report needs (``%tensorinfo``, ``%todevice`` and their
error messages), so the same object is always named the same way.
"""

from __future__ import annotations

from typing import Any, TypeGuard

import numpy as np
import torch

# What an object is, by its true type: ``type(obj)`` cannot be faked, while ``isinstance`` also
# believes an object's ``__class__`` (which may lie) and may run its ``__getattr__``.


def is_tensor(obj: Any) -> bool:
    """A ``torch.Tensor`` (or subclass) by its true type."""
    return issubclass(type(obj), torch.Tensor)


def is_ndarray(obj: Any) -> bool:
    """A NumPy array (or subclass: masked arrays, matrices, memmaps) by its true type."""
    return issubclass(type(obj), np.ndarray)


def is_array(obj: Any) -> bool:
    """True for what the magics treat as an array: tensors, ndarrays and NumPy scalars."""
    return issubclass(type(obj), (torch.Tensor, np.ndarray, np.generic))


def is_module(obj: Any) -> bool:
    """A ``torch.nn.Module`` by its true type."""
    return issubclass(type(obj), torch.nn.Module)


def is_optimizer(obj: Any) -> bool:
    """A ``torch.optim.Optimizer`` by its true type."""
    return issubclass(type(obj), torch.optim.Optimizer)


def is_masked_array(obj: object) -> TypeGuard[np.ma.MaskedArray]:
    """A ``numpy.ma.MaskedArray``."""
    return issubclass(type(obj), np.ma.MaskedArray)


def is_uninitialized(obj: Any) -> bool:
    """An uninitialized parameter or buffer (of a lazy module): no shape until the first forward."""
    return issubclass(type(obj), torch.nn.parameter.UninitializedTensorMixin)  # type: ignore[attr-defined]  # not in torch's .pyi stub


#: How every report describes an uninitialized parameter or buffer.
UNINITIALIZED = "uninitialized: shape unknown until the first forward"


def has_attribute(obj: Any, name: str) -> bool:
    """``hasattr`` that is False, not an exception, when ``__getattr__`` raises something else."""
    try:
        getattr(obj, name)
    except Exception:  # noqa: BLE001 - a hostile __getattr__ answers "no"
        return False
    return True


def claimed_class(obj: Any) -> type | None:
    """The class ``obj.__class__`` claims when it is not ``type(obj)`` (None when it tells the truth)."""
    try:
        claimed = object.__getattribute__(obj, "__class__")
    except Exception:  # noqa: BLE001
        return None
    return claimed if isinstance(claimed, type) and claimed is not type(obj) else None


def type_name(obj: Any) -> str:
    """``torch.Tensor``, ``torch.nn.Parameter``, ``torch.Tensor (FakeTensor)``, ``numpy.ndarray``,
    ``numpy.float32``; ``module.Qualname`` for anything else (always the true type)."""
    kind = type(obj)
    if is_uninitialized(obj):
        return f"torch.nn.{kind.__name__}"
    if issubclass(kind, torch.nn.Parameter):
        return "torch.nn.Parameter"
    if issubclass(kind, torch.Tensor) and kind.__module__.startswith("torch"):
        return "torch.Tensor" if kind is torch.Tensor else f"torch.Tensor ({kind.__qualname__})"
    if kind is np.ndarray:
        return "numpy.ndarray"
    if issubclass(kind, np.generic):
        return f"numpy.{kind.__name__}"
    return f"{kind.__module__}.{kind.__qualname__}"


def short_type_name(obj: Any) -> str:
    """:func:`type_name`, but builtins without their module (``dict``, not ``builtins.dict``)."""
    return type(obj).__name__ if type(obj).__module__ == "builtins" else type_name(obj)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message; its class name when it has none."""
    try:
        text = str(exc).strip()
    except Exception:  # noqa: BLE001 - an exception whose __str__ raises still has a name
        text = ""
    return text.splitlines()[0].strip() if text else type(exc).__name__


def describe_exception(exc: BaseException) -> str:
    """``TypeName: first line of the message`` (``TypeName`` alone when there is no message)."""
    line = first_line(exc)
    name = type(exc).__name__
    return name if line == name else f"{name}: {line}"


def format_bytes(n: int | None, exact: bool = False) -> str:
    """``1.5 MiB`` style sizes (``exact=True`` adds the byte count: ``1.5 MiB (1,572,864 B)``);
    ``unknown`` for None."""
    if n is None:
        return "unknown"
    if n < 1024:
        return f"{n:,} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            return f"{size:,.1f} {unit} ({n:,} B)" if exact else f"{size:,.1f} {unit}"
    return f"{n:,} B"  # pragma: no cover


__all__ = [
    "UNINITIALIZED",
    "claimed_class",
    "describe_exception",
    "first_line",
    "format_bytes",
    "has_attribute",
    "is_array",
    "is_masked_array",
    "is_module",
    "is_ndarray",
    "is_optimizer",
    "is_tensor",
    "is_uninitialized",
    "short_type_name",
    "type_name",
]
