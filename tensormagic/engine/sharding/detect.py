"""Is this object a DTensor (also inside ``nn.Parameter``)?  Decided without importing
``torch.distributed`` for anything else.

A plain tensor's path never imports ``torch.distributed``: the type's own module (and its
bases') is looked at first, and only a type that comes from ``torch.distributed`` leads to the
import of :class:`torch.distributed.tensor.DTensor` for the exact check.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch.distributed.tensor import DTensor


_KNOWN: dict[type, bool] = {}


def _from_distributed(cls: type) -> bool:
    """True when ``cls`` or a base comes from ``torch.distributed`` (remembered per type)."""
    got = _KNOWN.get(cls)
    if got is None:
        got = any(str(getattr(c, "__module__", "")).startswith("torch.distributed") for c in cls.__mro__)
        if len(_KNOWN) < 4096:
            _KNOWN[cls] = got
    return got


def is_dtensor(obj: Any) -> bool:
    """True for a ``DTensor`` (FSDP2's parameters are DTensors marked as parameters)."""
    if not _from_distributed(type(obj)):
        return False
    if "torch.distributed.tensor" not in sys.modules:  # a type from torch.distributed but not a DTensor
        try:
            import torch.distributed.tensor  # noqa: F401 - the DTensor class, for the exact check
        except ImportError:  # pragma: no cover - a torch built without distributed
            return False
    from torch.distributed.tensor import DTensor

    return isinstance(obj, DTensor)


def as_dtensor(obj: Any) -> DTensor | None:
    """``obj`` as a DTensor, or None when it is not one."""
    return obj if is_dtensor(obj) else None


def is_fsdp_module(obj: Any) -> bool:
    """True for a module that FSDP2's ``fully_shard`` was applied to (its class is made by FSDP)."""
    if not _from_distributed(type(obj)):
        return False
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, FSDPModule)


__all__ = ["as_dtensor", "is_dtensor", "is_fsdp_module"]
