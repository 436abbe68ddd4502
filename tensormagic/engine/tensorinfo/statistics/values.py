"""What statistics are, and the arithmetic every path shares.

:class:`ValueStats` is the result of every statistics path; :func:`mean_std` turns centred sums
into a mean and std, :func:`centring_pivot` picks the value they are centred on, and
:func:`value_kind` says how a dtype's values are read (exact integers, floats, |z|, booleans).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

#: Elements above which statistics are sampled rather than exact.
DEFAULT_BUDGET = 2**27

#: How many elements a sample holds.
SAMPLE_SIZE = 2**18

#: Elements per chunk for the chunked passes on the CPU (a float64 copy of one is 1 MiB).
CPU_CHUNK = 2**17

#: Elements of the strided sample whose mean is the centring pivot of the fast paths.
PIVOT_SAMPLE = 4096


@dataclass(kw_only=True)
class ValueStats:
    """Statistics of an array's values (``None`` where a number does not exist)."""

    min: float | int | bool | None
    max: float | int | bool | None
    mean: float | None
    std: float | None
    nan: int
    posinf: int
    neginf: int
    zeros: int
    exact: bool
    sample_size: int | None
    count: int
    over: str
    masked: int | None = None  # values a NumPy masked array leaves out (None: not a masked array)
    #: whose values these are, for a sharded tensor (DTensor): this rank's shard ("local"), the
    #: whole tensor ("global", %tensorinfo --global) or a Partial placement's unreduced values
    #: ("partial"); None for an unsharded array or tensor (its statistics are of all its values)
    scope: Literal["local", "global", "partial"] | None = None


#: Flipping the sign bit maps uint64's order onto int64's (exact min/max with int64 kernels).
SIGN_BIT = -(2**63)


def value_kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype == torch.uint64:
        return "uint64"
    if dtype.is_complex:
        return "complex"
    if dtype.is_floating_point:
        return "float"
    return "int"


def as_float64(chunk: torch.Tensor) -> torch.Tensor:
    if chunk.is_complex():  # |z| computed in double precision (complex64's abs rounds to float32)
        return chunk.to(torch.complex128).abs()
    return chunk.to(torch.float64)


def finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


#: Magnitude from which values are scaled by a power of two before their sums are taken: the
#: squares of values above ~1.3e154 overflow float64, and so do sums of many values near 1.8e308.
HUGE = 2.0**480
#: The centring pivot's sample is summed scaled by this (exact) power of two, so that the sum
#: of PIVOT_SAMPLE values near the float64 maximum cannot overflow.
PIVOT_SCALE = 2.0**-12


def scale_exponent(magnitude: float) -> int:
    """``E`` such that ``magnitude * 2**-E < 1`` when ``magnitude`` is huge (>= ``HUGE``); 0 when
    values that small need no scaling."""
    if not math.isfinite(magnitude) or magnitude < HUGE:
        return 0
    return math.frexp(magnitude)[1]


def mean_std(pivot: float, s1: float, s2: float, n: int, scale: float = 1.0) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1) of ``n`` values ``x`` from the sums of ``(x - pivot) * scale``
    (``s1``) and of its square (``s2``); None where there are too few values.

    ``scale`` is a power of two (exact): huge values are summed scaled down, so nothing
    overflows, and the results are scaled back (a std beyond float64's range is inf).
    """
    if n <= 0:
        return None, None
    std = math.sqrt(max((s2 - s1 * s1 / n) / (n - 1), 0.0)) / scale if n > 1 else None
    return pivot + s1 / n / scale, std


def centring_pivot(flat: torch.Tensor) -> torch.Tensor:
    """The float64 mean of the finite values of an evenly spaced sample of ``flat`` (0 if it has
    none): 0-d, on its device, no sync.

    Centring on a value near the mean keeps the sums of squares accurate for data far from zero
    (e.g. 1e4 +- 1e-3), where the textbook sum(x**2) - n*mean**2 would cancel catastrophically.
    """
    sample = flat[:: max(1, flat.numel() // PIVOT_SAMPLE)][:PIVOT_SAMPLE].to(torch.float64)
    finite = torch.isfinite(sample)
    scaled_sum = torch.where(finite, sample, 0.0).mul_(PIVOT_SCALE).sum()  # never overflows
    return scaled_sum / finite.sum().clamp(min=1) / PIVOT_SCALE
