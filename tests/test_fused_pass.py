"""The C pass (``_fused.c``) gives the same numbers on every machine.

Its sums are defined without reference to any vector width: fixed blocks of BLOCK logical
elements, 16 lanes fixed by each element's offset in its block, lanes added in order, blocks
added in order.  Here that definition is written out in NumPy (sequential sums: ``np.cumsum``)
and the C pass must match it bit for bit: on an AVX-512 machine, an AVX2 machine or one with
neither, whatever the number of threads, wherever the data sits in memory.  The centring
pivot and the histogram's stratified random sample are checked the same way.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from tensormagic.engine.tensorinfo.statistics import fused

pytestmark = pytest.mark.skipif(not fused.available(), reason="the C helper is not built here (or TENSORMAGIC_NO_C_HELPER is set)")

BLOCK = 65536
PIVOT_SAMPLE = 4096
PIVOT_SCALE = 2.0**-12
MASK64 = 2**64 - 1


def run(t: torch.Tensor, threads: int = 2, sample: torch.Tensor | None = None):
    shape, strides = fused.walk_order(t.shape, [s * t.element_size() for s in t.stride()])
    room = (sample.data_ptr(), sample.numel()) if sample is not None else ()
    return fused._fused.stats(t.data_ptr(), fused.TORCH_KINDS[t.dtype], shape, strides, 1.0, threads, *room)


def sequential(values) -> float:
    return functools.reduce(lambda a, b: a + b, values, 0.0)


def reference(t: torch.Tensor):
    """(lo, hi, s1, s2, zeros, nan, posinf, neginf, centre) by the C pass's definition."""
    floating = t.is_floating_point()
    flat = t.contiguous().reshape(-1)  # the walk order of the tensors used here is row-major
    v = flat.to(torch.float64).numpy() if floating else np.array(flat.tolist(), dtype=np.float64)
    n = v.size
    step = max(1, n // PIVOT_SAMPLE)
    picked = v[::step][:PIVOT_SAMPLE]
    picked = picked[np.isfinite(picked)]
    centre = sequential(picked * PIVOT_SCALE) / picked.size / PIVOT_SCALE if picked.size else 0.0
    finite = np.isfinite(v)
    d = np.where(finite, v - centre, 0.0)
    s1 = s2 = 0.0
    for start in range(0, n, BLOCK):
        part = d[start : start + BLOCK]
        padded = np.zeros(-(-part.size // 16) * 16)
        padded[: part.size] = part
        lanes = padded.reshape(-1, 16)
        s1 += sequential(np.cumsum(lanes, axis=0)[-1])
        s2 += sequential(np.cumsum(lanes * lanes, axis=0)[-1])
    if floating:
        kept = v[finite]
        lo, hi = (float(kept.min()), float(kept.max())) if kept.size else (math.inf, -math.inf)
    else:
        ints = flat.tolist()
        lo, hi = min(ints), max(ints)
    counts = (int((v == 0).sum()), int(np.isnan(v).sum()), int(np.isposinf(v).sum()), int(np.isneginf(v).sum()))
    return (lo, hi, s1, s2, *counts, centre)


def make(dtype: torch.dtype, n: int, seed: int, special: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        x = (torch.randn(n, generator=g, dtype=torch.float64) * 3 + 1e3).to(dtype)
        x[:: max(1, n // 97)] = 0
        if special:  # NaN and inf in some blocks only: those take the masked kernel
            x[70_000:70_100:7] = math.nan
            x[n - 3] = math.inf
            x[n - 2] = -math.inf
        return x
    info = torch.iinfo(dtype)
    lo, hi = max(info.min, -(2**40)), min(info.max, 2**40)
    return torch.randint(lo, hi, (n,), generator=g, dtype=torch.int64).to(dtype)


FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


@pytest.mark.parametrize(
    ("dtype", "special"),
    [(d, False) for d in FLOATS + [torch.int32, torch.int64, torch.uint8]] + [(d, True) for d in FLOATS],
    ids=lambda v: str(v).removeprefix("torch.") if isinstance(v, torch.dtype) else ("NaN and inf" if v else "finite"),
)
def test_the_c_pass_is_its_definition_bit_for_bit(dtype, special):
    t = make(dtype, 3 * BLOCK + 12_345, seed=1, special=special)
    got, want = run(t), reference(t)
    assert got == want or all(a == b or (a != a and b != b) for a, b in zip(got, want)), (got, want)


def test_strided_layouts_walk_in_the_order_they_say():
    """Dimensions are walked by decreasing stride (memory order), merged where contiguous."""
    base = make(torch.float32, 600 * 700, seed=2, special=False).reshape(600, 700)
    cases = [
        (base[:, ::3], base[:, ::3].contiguous()),  # a step: rows of a strided inner loop
        (base[1::2, 5:600], base[1::2, 5:600].contiguous()),
        (base.t(), base),  # a transpose is walked in memory order
        (base[0].expand(3, 700), base[0].repeat_interleave(3)),  # a stride of 0: each value 3 times
    ]
    for view, walked in cases:
        assert run(view) == reference(walked), view.shape


def test_the_result_does_not_depend_on_threads_or_addresses():
    x = make(torch.float32, 5 * BLOCK + 3, seed=3, special=True)
    moved = torch.empty(x.numel() + 1, dtype=x.dtype)[1:]  # the same values, 4 bytes further on
    moved.copy_(x)
    results = {run(x, threads) for threads in (1, 2, 3, 8)} | {run(moved, 2)}
    assert len(results) == 1


def test_huge_values_are_summed_scaled():
    x = torch.tensor([1.7e308, -1.7e308, 1e308] * 30_000, dtype=torch.float64)
    s = fused.tensor_stats(x, "values")
    scaled = x.numpy() * 2.0**-1000
    assert s.mean == pytest.approx(float(scaled.mean()) * 2.0**1000, rel=1e-12)
    assert s.std == pytest.approx(float(scaled.std(ddof=1)) * 2.0**1000, rel=1e-12)


def mix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def test_the_histogram_sample_is_the_stratified_sample_it_says():
    x = torch.arange(7 * BLOCK + 5, dtype=torch.int64)  # each value is its own position
    k = 4099
    sample = torch.empty(k, dtype=torch.int64)
    run(x, 2, sample)
    per = x.numel() / k
    want = [min(int((i + (mix64(i) >> 11) * 2.0**-53) * per), x.numel() - 1) for i in range(k)]
    assert sample.tolist() == want
    assert all(int(i * per) <= p < (i + 1) * per for i, p in enumerate(want))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int16, torch.uint64, torch.bool])
def test_every_kernel_agrees_with_the_pure_path(monkeypatch, dtype):
    """The same statistics without the C helper (the pure torch paths), to float64 rounding."""
    from tensormagic.engine.tensorinfo.statistics import tensor_stats

    if dtype == torch.bool:
        t = torch.rand(3 * BLOCK + 1, generator=torch.Generator().manual_seed(4)) < 0.3
    elif dtype == torch.uint64:
        t = torch.tensor([2**64 - 1, 0, 2**63, 5] * 50_000, dtype=torch.uint64)
    else:
        t = make(dtype, 3 * BLOCK + 1, seed=4, special=dtype.is_floating_point)
    view = t[1::3]
    for x in (t, view):
        c = tensor_stats(x, 2**62)
        monkeypatch.setattr(fused, "_fused", None)
        p = tensor_stats(x, 2**62)
        monkeypatch.undo()
        assert (c.min, c.max, c.zeros, c.nan, c.posinf, c.neginf, c.count) == (p.min, p.max, p.zeros, p.nan, p.posinf, p.neginf, p.count)
        assert type(c.min) is type(p.min)
        assert c.mean == pytest.approx(p.mean, rel=1e-12, abs=1e-300)
        assert c.std == pytest.approx(p.std, rel=1e-9)


VARIANT_CHECK = r"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("_fused", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from tensormagic.engine.tensorinfo.statistics import fused
installed = fused._fused
fused._fused = module
import torch
from tests.test_fused_pass import BLOCK, make, reference, run
for dtype, special in [(torch.float32, True), (torch.float64, True), (torch.float16, True), (torch.bfloat16, False), (torch.int64, False)]:
    t = make(dtype, 2 * BLOCK + 999, seed=5, special=special)
    got, want = run(t), reference(t)
    assert all(a == b or (a != a and b != b) for a, b in zip(got, want)), (dtype, got, want)
    assert run(t[:, None].expand(-1, 2)[::3]) == run(t[:, None].expand(-1, 2)[::3].contiguous())
    if not special:  # the histogram on several threads: the installed helper's counts
        edges = [float(e) for e in torch.linspace(float(t.min()), float(t.max()), 33)]
        shape, strides = fused.walk_order(t.shape, [s * t.element_size() for s in t.stride()])
        counts = [m.histogram(t.data_ptr(), fused.TORCH_KINDS[t.dtype], shape, strides, edges, 3) for m in (module, installed)]
        assert counts[0] == counts[1], (dtype, counts)
print("same")
"""


@pytest.mark.slow
@pytest.mark.parametrize(("march", "openmp"), [("x86-64-v3", True), ("x86-64", True), ("x86-64-v3", False)], ids=["AVX2 build", "baseline build", "POSIX threads build"])
def test_avx2_and_baseline_builds_give_the_same_numbers(tmp_path, march, openmp):
    """The C pass built for AVX2 only, or for the x86-64 baseline (SSE2), gives the numbers of
    its definition too: what an AVX2 machine or an old one computes, checked on this one; built
    without OpenMP (a compiler without it) it runs its parts on POSIX threads, to the same numbers."""
    import platform
    import shutil
    import subprocess
    import sys
    import sysconfig
    from pathlib import Path

    if platform.machine() != "x86_64" or shutil.which("gcc") is None:
        pytest.skip("needs gcc on x86-64")
    if march == "x86-64-v3" and "avx2" not in Path("/proc/cpuinfo").read_text():
        pytest.skip("this processor cannot run an AVX2 build")
    source = Path(fused.__file__).with_name("_fused.c")
    built = tmp_path / ("_fused" + sysconfig.get_config_var("EXT_SUFFIX"))
    flags = ["-O3", "-pthread", *(["-fopenmp"] if openmp else []), "-ffp-contract=off", "-fPIC", "-shared", "-DTENSORMAGIC_ONE_TARGET", f"-march={march}"]
    compiled = subprocess.run(["gcc", *flags, "-I" + sysconfig.get_paths()["include"], str(source), "-o", str(built)], capture_output=True, text=True)
    if compiled.returncode:
        pytest.skip(f"gcc cannot build it here: {compiled.stderr.strip().splitlines()[-1:]}")
    checked = subprocess.run([sys.executable, "-c", VARIANT_CHECK, str(built)], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert checked.returncode == 0 and checked.stdout.strip() == "same", checked.stderr[-3000:]
