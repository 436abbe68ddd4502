"""How the engine names and describes things: type names, "is an array", exceptions, sizes.

One place for the small helpers every report needs (``%tensorinfo``, ``%todevice`` and their
error messages), so the same object is always named the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def is_array(obj: Any) -> bool:
    """True for what the magics treat as an array: tensors, ndarrays and NumPy scalars."""
    return isinstance(obj, (torch.Tensor, np.ndarray, np.generic))


def type_name(obj: Any) -> str:
    """``torch.Tensor``, ``torch.nn.Parameter``, ``torch.Tensor (FakeTensor)``, ``numpy.ndarray``,
    ``numpy.float32``; ``module.Qualname`` for anything else."""
    kind = type(obj)
    if isinstance(obj, torch.nn.Parameter):
        return "torch.nn.Parameter"
    if isinstance(obj, torch.Tensor) and kind.__module__.startswith("torch"):
        return "torch.Tensor" if kind is torch.Tensor else f"torch.Tensor ({kind.__qualname__})"
    if isinstance(obj, np.ndarray) and kind is np.ndarray:
        return "numpy.ndarray"
    if isinstance(obj, np.generic):
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


__all__ = ["describe_exception", "first_line", "format_bytes", "is_array", "short_type_name", "type_name"]
