"""Value statistics computed where the data lives, exact up to a budget, never a whole copy.

A tensor is never copied whole: statistics come from one fused pass, whole-tensor reductions
or chunks far smaller than the tensor, and on an accelerator the statistics reach the host in
one transfer (one device sync; a second only for values whose sums would overflow float64, and
the histogram has its own).  Above a size budget a fixed-seed random sample is used and the
result says so.  The user's random number generators are never touched.

Modules, one job each:

- :mod:`.values`: :class:`ValueStats` and the shared arithmetic (mean/std from centred sums).
- :mod:`.chunks`: small pieces of a tensor or array, and fixed-seed samples.
- :mod:`.fused`: the optional C helper (``_fused.c``).
- :mod:`.cpu`: the CPU paths without the C helper (its pure torch twin; the general chunk loop).
- :mod:`.accelerator`: the GPU paths (no host read until one gather).
- :mod:`.compute`: which path a tensor, array or stream of pieces takes.
- :mod:`.histogram`: the histogram of the finite values.
- :mod:`.masked`: NumPy masked arrays (the unmasked values only).
"""

from __future__ import annotations

from tensormagic.engine.tensorinfo.statistics.chunks import iter_chunks, pieces, sample_values
from tensormagic.engine.tensorinfo.statistics.compute import (
    chunks_stats,
    numpy_stats,
    numpy_stats_and_sample,
    stats_and_sample,
    stats_sample_grids,
    tensor_stats,
)
from tensormagic.engine.tensorinfo.statistics.fused import cpu_moments
from tensormagic.engine.tensorinfo.statistics.histogram import Histogram, value_histogram
from tensormagic.engine.tensorinfo.statistics.masked import masked_histogram_values, masked_stats
from tensormagic.engine.tensorinfo.statistics.values import CPU_CHUNK, DEFAULT_BUDGET, SAMPLE_SIZE, ValueStats

__all__ = [
    "CPU_CHUNK",
    "DEFAULT_BUDGET",
    "SAMPLE_SIZE",
    "Histogram",
    "ValueStats",
    "chunks_stats",
    "cpu_moments",
    "iter_chunks",
    "masked_histogram_values",
    "masked_stats",
    "numpy_stats",
    "numpy_stats_and_sample",
    "pieces",
    "sample_values",
    "stats_and_sample",
    "stats_sample_grids",
    "tensor_stats",
    "value_histogram",
]
