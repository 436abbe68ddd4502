"""The mean of integers too large for a float64 sum is exact (correctly rounded), on every path."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from tensormagic.engine.tensorinfo.statistics import fused
from tensormagic.engine.tensorinfo.statistics.compute import numpy_stats, numpy_stats_and_sample, tensor_stats


def true_mean(values: list[int]) -> float:
    return float(Fraction(sum(values), len(values)))


CASES = [
    [2**62 + 1, 2**62 + 3, -(2**63)],
    [1, 2**53 + 1],
    [2**63 - 1] * 5 + [-(2**63)] * 4,
]


@pytest.mark.parametrize("path", ["fused C pass", "pure torch"])
@pytest.mark.parametrize("values", CASES)
def test_int64_tensor_and_array_means(monkeypatch, path, values):
    if path == "fused C pass" and not fused.available():
        pytest.skip("the C helper is not built here")
    if path == "pure torch":
        monkeypatch.setattr(fused, "_fused", None)
    assert tensor_stats(torch.tensor(values)).mean == true_mean(values)
    assert numpy_stats(np.array(values, dtype=np.int64)).mean == true_mean(values)
    strided = torch.tensor([v for v in values for _ in range(2)])[::2]
    assert tensor_stats(strided).mean == true_mean(values)


def test_uint64_and_a_large_array_with_a_histogram_sample():
    values = [2**64 - 1, 2**64 - 3, 7]
    assert tensor_stats(torch.tensor(values, dtype=torch.uint64)).mean == true_mean(values)
    a = np.full(300_000, 2**60, dtype=np.int64)
    a[0] += 1
    stats, _ = numpy_stats_and_sample(a)
    assert stats.mean == true_mean([2**60] * 299_999 + [2**60 + 1])


def test_small_integers_keep_the_plain_path():
    assert tensor_stats(torch.arange(10)).mean == 4.5
