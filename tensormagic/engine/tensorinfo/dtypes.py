"""NumPy <-> Torch dtype twins, found by asking the libraries themselves."""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import torch

# Torch dtypes a learner meets, in the order the dtype table shows them.
TABLE_DTYPES: tuple[torch.dtype, ...] = (
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.uint16,
    torch.uint32,
    torch.uint64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.complex64,
    torch.complex128,
)

_NO_NUMPY_TWIN_REASONS = {
    "bfloat16": "NumPy has no bfloat16; use .float() (float32) before .numpy()",
    "float8": "NumPy has no float8 types; use .float() before .numpy()",
    "complex32": "NumPy has no complex32; use .to(torch.complex64) before .numpy()",
    "q": "quantized dtypes have no NumPy twin; use .dequantize() or .int_repr()",
}


@dataclass(frozen=True)
class DtypeTwin:
    """A dtype and its twin in the other library (None with a reason when there is none)."""

    dtype: str
    twin: str | None
    note: str | None


def torch_dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` style name."""
    return str(dtype)


def numpy_dtype_name(dtype: np.dtype) -> str:
    """``float64`` style name (byte order shown only when it is not native; fields of a
    structured dtype shown in full)."""
    dtype = np.dtype(dtype)
    if dtype.fields is not None or dtype.subdtype is not None:
        return str(dtype)  # structured / subarray: the fields say more than "void64"
    if dtype.byteorder not in ("=", "|") and not dtype.isnative:
        return dtype.str
    return dtype.name


@functools.cache
def numpy_twin_of_torch(dtype: torch.dtype) -> DtypeTwin:
    """What ``.numpy()`` would give for a tensor of this dtype."""
    name = torch_dtype_name(dtype)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            twin = torch.empty(0, dtype=dtype).numpy().dtype
        return DtypeTwin(name, numpy_dtype_name(twin), None)
    except Exception as exc:  # noqa: BLE001 - the library's own answer is the fact
        short = name.removeprefix("torch.")
        for key, reason in _NO_NUMPY_TWIN_REASONS.items():
            if short.startswith(key):
                return DtypeTwin(name, None, reason)
        return DtypeTwin(name, None, f"NumPy has no twin of {name} ({exc})")


@functools.cache
def torch_twin_of_numpy(dtype: np.dtype) -> DtypeTwin:
    """What ``torch.from_numpy`` would give for an array of this dtype."""
    dtype = np.dtype(dtype)
    name = numpy_dtype_name(dtype)
    try:
        twin = torch.from_numpy(np.empty(0, dtype=dtype)).dtype
        return DtypeTwin(name, torch_dtype_name(twin), None)
    except Exception:  # noqa: BLE001
        if not dtype.isnative:
            native = dtype.newbyteorder("=")
            inner = torch_twin_of_numpy(native)
            return DtypeTwin(
                name,
                inner.twin,
                f"non-native byte order: torch.from_numpy fails; use x.astype('{native.name}') first",
            )
        return DtypeTwin(name, None, f"torch has no {dtype.name} dtype (kind {dtype.kind!r})")


def dtype_table() -> list[DtypeTwin]:
    """The learner's dtype table: every common torch dtype with its NumPy twin."""
    return [numpy_twin_of_torch(d) for d in TABLE_DTYPES]
