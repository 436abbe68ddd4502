"""What each NumPy <-> Torch conversion would do with an object (share, copy or fail, and why)."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch

from tensormagic.engine.naming import first_line
from tensormagic.engine.tensorinfo import memory
from tensormagic.engine.tensorinfo.reports import Conversion


def _try(action: str, fn: Callable[[], Conversion]) -> Conversion:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()
    except Exception as exc:  # noqa: BLE001 - the library's own reason is what we report
        return Conversion(call=action, result="fails", detail=first_line(exc))


def tensor_conversions(t: torch.Tensor) -> list[Conversion]:
    def numpy() -> Conversion:
        a = t.numpy()
        ra, rt = memory.memory_region(a), memory.memory_region(t)
        if t.numel() and (ra is None or rt is None):
            raise ValueError("the memory of the tensor or its array could not be located")
        shares = memory.exact_overlap(ra, rt) if ra is not None and rt is not None and t.numel() else True
        return Conversion(call=".numpy()", result="shares memory" if shares else "copies", detail="a NumPy view of the same bytes: changes show in both")

    fixes = []
    if t.requires_grad:
        fixes.append(".detach()")
    if t.device.type != "cpu":
        fixes.append(".cpu()")
    if t.dtype in (torch.bfloat16, torch.complex32) or "float8" in str(t.dtype):
        fixes.append(".float()")
    conv = _try(".numpy()", numpy)
    if conv.result == "fails" and fixes:
        cost = "the same memory, no copy" if fixes == [".detach()"] else "a copy"
        conv.detail += f" - use t{''.join(fixes)}.numpy() ({cost})"
    return [
        conv,
        Conversion(call="torch.from_numpy(t)", result="not applicable", detail="takes a NumPy array, not a tensor"),
        Conversion(call="torch.tensor(t)", result="copies", detail="always copies (and detaches); torch suggests t.clone().detach()"),
        Conversion(call="torch.as_tensor(t)", result="same object", detail="returns the tensor itself when dtype and device already match"),
    ]


def array_conversions(a: np.ndarray, masked: bool = False) -> list[Conversion]:
    """The conversions of the plain ndarray ``a``; ``masked``: it is a masked array's data, and
    every conversion keeps the data but drops the mask (masked values become data)."""
    rows = _plain_array_conversions(a)
    if masked:
        for row in rows[1:]:
            if row.result != "fails":
                row.detail += "; the mask is dropped: masked values (the filler) become data - convert a.filled(value) or a.compressed() instead"
    return rows


def _plain_array_conversions(a: np.ndarray) -> list[Conversion]:
    def from_numpy() -> Conversion:
        torch.from_numpy(a)
        detail = "a tensor over the same bytes: changes show in both"
        if not a.flags.writeable:
            detail += " (the array is read-only; torch warns that writes are undefined)"
        return Conversion(call="torch.from_numpy(a)", result="shares memory", detail=detail)

    def tensor() -> Conversion:
        torch.tensor(a[(0,) * a.ndim] if a.ndim and a.size else a)  # probe the dtype cheaply
        return Conversion(call="torch.tensor(a)", result="copies", detail="always copies: later changes to a do not show in the tensor")

    def as_tensor() -> Conversion:
        shared = from_numpy()
        if shared.result == "shares memory":
            return Conversion(call="torch.as_tensor(a)", result="shares memory", detail="shares like torch.from_numpy (on the CPU, same dtype)")
        return Conversion(call="torch.as_tensor(a)", result="copies", detail="")

    conv_as = _try("torch.as_tensor(a)", as_tensor)
    if conv_as.result == "fails" and a.dtype.kind in "biufc":
        conv_as = Conversion(call="torch.as_tensor(a)", result="copies", detail="cannot share this layout, so it copies")
    return [
        Conversion(call="a.numpy()", result="not applicable", detail="already a NumPy array"),
        _try("torch.from_numpy(a)", from_numpy),
        _try("torch.tensor(a)", tensor),
        conv_as,
    ]
