"""Property-based tests: %tensorinfo never raises and its facts match ground truth.

Ground truth is computed here, independently of the engine: values are widened to float64 /
Python ints with NumPy (``tensor.to(float64)`` is exact for every float dtype of 64 bits or
less), counts come from NumPy reductions, layouts from the objects the test itself built, and
aliasing from ``np.shares_memory`` (exact, on small arrays).
"""

from __future__ import annotations

import json
import math
import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import as_strided

from tensormagic.engine.tensorinfo import ModuleInfo, TensorInfo, inspect_namespace, inspect_object
from tensormagic.render.display import render_html, render_text

warnings.filterwarnings("ignore", category=UserWarning)

FLOAT8 = [getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu") if hasattr(torch, n)]
INT_DTYPES = [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.uint16, torch.uint32, torch.uint64]
FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, *FLOAT8]
COMPLEX_DTYPES = [torch.complex64, torch.complex128]
ALL_DTYPES = [torch.bool, *INT_DTYPES, *FLOAT_DTYPES, *COMPLEX_DTYPES]

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

shapes = st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple)


def values_for(dtype: torch.dtype, n: int, seed: int, special: bool) -> torch.Tensor:
    """``n`` values of ``dtype`` (full integer ranges; floats with NaN/inf/zeros if ``special``)."""
    rng = np.random.default_rng(seed)
    if dtype == torch.bool:
        return torch.from_numpy(rng.random(n) < 0.5)
    if dtype in INT_DTYPES:
        info = torch.iinfo(dtype)
        np_dtype = {torch.uint16: np.uint16, torch.uint32: np.uint32, torch.uint64: np.uint64}.get(dtype, np.int64)
        if special:  # the extremes, where float64 rounding would be off by one or more
            raw = rng.choice(np.array([info.min, info.max, info.max - 1, info.min + 1, 0, 1], dtype=np_dtype), n)
        else:
            raw = rng.integers(info.min, info.max, n, dtype=np_dtype, endpoint=True)
        return torch.from_numpy(raw).to(dtype)
    if dtype.is_complex:
        z = rng.normal(size=n) + 1j * rng.normal(size=n)
        if special and n:
            z[rng.random(n) < 0.2] = complex(math.nan, 0)
            z[rng.random(n) < 0.2] = complex(math.inf, 1)
            z[rng.random(n) < 0.2] = 0
        return torch.from_numpy(z).to(dtype)
    x = rng.normal(size=n) * rng.choice([1.0, 100.0])
    if special and n:
        for value in (math.nan, math.inf, -math.inf, 0.0, -0.0):
            x[rng.random(n) < 0.15] = value
    return torch.from_numpy(x).to(dtype)


def truth_values(t: torch.Tensor) -> np.ndarray:
    """Every value of ``t`` widened exactly: float64 (|z| for complex), object ints for ints."""
    if t.dtype == torch.bool:
        return t.contiguous().numpy().astype(np.int64).reshape(-1)
    if t.dtype in INT_DTYPES:
        return np.array([int(v) for v in t.contiguous().reshape(-1).tolist()], dtype=object)
    if t.is_complex():
        return np.abs(t.to(torch.complex128).resolve_conj().contiguous().numpy()).reshape(-1)
    return t.to(torch.float64).contiguous().numpy().reshape(-1)


def kind_of(dtype) -> str:
    if dtype in (torch.bool, np.bool_):
        return "bool"
    if (isinstance(dtype, torch.dtype) and dtype.is_complex) or (not isinstance(dtype, torch.dtype) and np.dtype(dtype).kind == "c"):
        return "complex"
    return "other"


def check_stats(stats, values: np.ndarray, numel: int, dtype_kind: str) -> None:
    """The report's statistics against ground truth ``values`` (all of them, exact)."""
    assert stats is not None
    assert stats.count == numel and stats.exact
    if values.dtype == object:  # integers: exact min/max as Python ints
        assert stats.nan == stats.posinf == stats.neginf == 0
        assert stats.zeros == sum(1 for v in values if v == 0)
        if numel:
            assert stats.min == min(values) and stats.max == max(values)
            assert type(stats.min) is int and type(stats.max) is int
            mean = sum(values) / numel
            scale = float(max(abs(v) for v in values)) or 1.0  # float64 sums of values up to 2**64
            assert stats.mean == pytest.approx(float(mean), rel=1e-9, abs=1e-12 * scale)
        else:
            assert stats.min is None and stats.max is None
        return
    nan = int(np.isnan(values).sum())
    assert stats.nan == nan
    assert stats.posinf == int(np.isposinf(values).sum())
    assert stats.neginf == int(np.isneginf(values).sum())
    assert stats.zeros == int((values == 0).sum())
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        assert stats.min is None and stats.max is None and stats.mean is None
        return
    if dtype_kind == "bool":
        assert stats.min is bool(finite.min()) and stats.max is bool(finite.max())
    elif dtype_kind == "complex":  # |z|: torch's and NumPy's hypot may differ in the last bit
        assert stats.min == pytest.approx(finite.min(), rel=1e-14) and stats.max == pytest.approx(finite.max(), rel=1e-14)
    else:
        assert stats.min == finite.min() and stats.max == finite.max()  # exact: no rounding
    scale = float(np.abs(finite).max()) or 1.0
    assert stats.mean == pytest.approx(float(finite.mean()), rel=1e-6, abs=1e-9 * scale)
    if finite.size > 1:
        assert stats.std == pytest.approx(float(finite.std(ddof=1)), rel=1e-5, abs=1e-7 * scale)
    else:
        assert stats.std is None


def renders(report) -> None:
    """Every view of the report builds and the dict is JSON."""
    render_text(report)
    render_html(report)
    json.dumps(report.to_dict())


# ---------------------------------------------------------------------------------------------
# dense tensors: dtypes x shapes x layouts


LAYOUTS = ["contiguous", "transpose", "step", "expand", "as_strided", "channels_last", "narrow", "zero_d_select", "conj"]


def apply_layout(base: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "contiguous":
        return base
    if layout == "transpose":
        assume(base.dim() >= 2)
        return base.transpose(0, -1)
    if layout == "step":
        assume(base.dim() >= 1)
        return base[::2] if base.dim() == 1 else base[::2, ..., ::3]
    if layout == "expand":
        return base.unsqueeze(0).expand(3, *base.shape)
    if layout == "as_strided":
        n = base.numel()
        assume(n >= 2)
        flat = base.reshape(-1) if base.is_contiguous() else base.contiguous().reshape(-1)
        return flat.as_strided((n - 1, 2), (1, 1))  # rows overlap: element i+1 appears twice
    if layout == "channels_last":
        assume(base.dim() == 4)
        return base.contiguous(memory_format=torch.channels_last)
    if layout == "narrow":
        assume(base.dim() >= 1 and base.shape[0] >= 1)
        return base.narrow(0, 1, base.shape[0] - 1) if base.shape[0] > 1 else base.narrow(0, 0, 0)
    if layout == "zero_d_select":
        assume(base.numel() >= 1)
        return base.reshape(-1)[base.numel() // 2]
    if layout == "conj":
        assume(base.is_complex())
        return base.conj()
    raise AssertionError(layout)


@settings(max_examples=250, **SETTINGS)
@given(dtype=st.sampled_from(ALL_DTYPES), shape=shapes, layout=st.sampled_from(LAYOUTS), seed=st.integers(0, 2**32 - 1), special=st.booleans())
def test_dense_tensor_facts_match_ground_truth(dtype, shape, layout, seed, special):
    base = values_for(dtype, math.prod(shape), seed, special).reshape(shape)
    try:
        t = apply_layout(base, layout)
    except (RuntimeError, NotImplementedError):  # a layout op this dtype lacks: not our subject
        assume(False)
    report = inspect_object("t", t, {"t": t, "base": base})
    assert isinstance(report, TensorInfo)
    assert report.shape == list(t.shape) and report.ndim == t.dim()
    assert report.strides == list(t.stride())
    assert report.byte_strides == [s * t.element_size() for s in t.stride()]
    assert report.numel == t.numel() and report.nbytes == t.numel() * t.element_size()
    storage_owner = t if layout == "channels_last" else base
    assert report.storage_nbytes == storage_owner.numel() * storage_owner.element_size()
    assert report.contiguous == t.is_contiguous()
    assert report.dtype == str(dtype)
    check_stats(report.stats, truth_values(t), t.numel(), kind_of(dtype))
    if t.numel() and layout != "channels_last" and t is not base:
        assert "base" in {a.name for a in report.aliases}
    renders(report)


@settings(max_examples=40, **SETTINGS)
@given(dtype=st.sampled_from(ALL_DTYPES), seed=st.integers(0, 2**32 - 1), special=st.booleans(), n=st.integers(0, 300))
def test_sampled_statistics_say_so_and_stay_in_range(dtype, seed, special, n):
    t = values_for(dtype, n, seed, special)
    report = inspect_object("t", t, {"t": t}, budget=16)
    s = report.stats
    truth = truth_values(t)
    if n <= 16:
        check_stats(s, truth, n, kind_of(dtype))
        return
    assert not s.exact and s.count == n and s.sample_size is not None
    finite = [v for v in truth if v == v and abs(v) != math.inf] if truth.dtype != object else list(truth)
    if s.min is not None:  # a sample's extremes lie within the true extremes
        lo, hi = min(finite), max(finite)
        slack = 1e-14 * max(abs(lo), abs(hi)) if dtype.is_complex else 0  # hypot's last bit
        assert lo - slack <= s.min <= s.max <= hi + slack


# ---------------------------------------------------------------------------------------------
# NumPy arrays, including negative strides and dtypes torch cannot view


NP_DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.float16, np.float32, np.float64, np.longdouble, np.complex64, np.complex128, np.dtype(">f4"), np.dtype(">i8")]
NP_LAYOUTS = ["contiguous", "reverse", "step_reverse", "transpose", "broadcast", "as_strided", "fortran", "odd_bytes"]


def np_values(dtype: np.dtype, n: int, seed: int, special: bool) -> np.ndarray:
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    if dtype.kind == "b":
        return rng.random(n) < 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if special:
            return rng.choice(np.array([info.min, info.max, 0, 1], dtype=dtype), n)
        return rng.integers(info.min, info.max, n, dtype=dtype.newbyteorder("="), endpoint=True).astype(dtype)
    x = rng.normal(size=n) * 10
    if dtype.kind == "c":
        x = x + 1j * rng.normal(size=n)
    if special and n:
        for value in (math.nan, math.inf, -math.inf, 0.0):
            x[rng.random(n) < 0.15] = value
    return x.astype(dtype)


def np_layout(base: np.ndarray, layout: str) -> np.ndarray:
    if layout == "contiguous":
        return base
    if layout == "reverse":
        return base[::-1]
    if layout == "step_reverse":
        return base[::-1, ::2] if base.ndim >= 2 else base[::-3]
    if layout == "transpose":
        return base.T
    if layout == "broadcast":
        return np.broadcast_to(base, (2, *base.shape))
    if layout == "as_strided":
        flat = base.reshape(-1)
        assume(flat.size >= 2)
        return as_strided(flat, (flat.size - 1, 2), (flat.strides[0], flat.strides[0]))
    if layout == "fortran":
        return np.asfortranarray(base)
    if layout == "odd_bytes":  # element strides that are not whole elements
        assume(base.itemsize > 1 and base.size >= 1)
        raw = np.zeros(base.size * base.itemsize + 1, dtype=np.uint8)
        view = np.ndarray((base.size,), dtype=base.dtype, buffer=raw, offset=1, strides=(base.itemsize,))
        view[...] = base.reshape(-1)
        return view
    raise AssertionError(layout)


@settings(max_examples=150, **SETTINGS)
@given(dtype=st.sampled_from(NP_DTYPES), shape=shapes.filter(lambda s: len(s) >= 1), layout=st.sampled_from(NP_LAYOUTS), seed=st.integers(0, 2**32 - 1), special=st.booleans())
def test_numpy_array_facts_match_ground_truth(dtype, shape, layout, seed, special):
    base = np_values(dtype, math.prod(shape), seed, special).reshape(shape)
    a = np_layout(base, layout)
    report = inspect_object("a", a, {"a": a, "base": base})
    assert report.shape == list(a.shape) and report.byte_strides == list(a.strides)
    assert report.nbytes == a.nbytes
    if layout in ("fortran", "odd_bytes"):
        assert report.storage_nbytes >= a.nbytes
    else:
        assert report.storage_nbytes == base.nbytes
    if a.dtype.kind == "b":
        truth = a.astype(np.int64).reshape(-1)
    elif a.dtype.kind in "iu":
        truth = np.array([int(v) for v in a.reshape(-1).tolist()], dtype=object)
    elif a.dtype.kind == "c":
        truth = np.abs(a.astype(np.complex128)).reshape(-1)
    else:
        truth = a.astype(np.float64).reshape(-1)
    check_stats(report.stats, truth, a.size, kind_of(a.dtype))
    renders(report)


# ---------------------------------------------------------------------------------------------
# other kinds: sparse, quantized, nested, meta, fake


@settings(max_examples=60, **SETTINGS)
@given(dtype=st.sampled_from([torch.float32, torch.float64, torch.int32, torch.int64, torch.complex64, torch.bfloat16]), shape=st.tuples(st.integers(0, 6), st.integers(0, 6)), layout=st.sampled_from(["coo", "csr", "csc", "coo_uncoalesced"]), seed=st.integers(0, 2**32 - 1))
def test_sparse_facts_match_ground_truth(dtype, shape, layout, seed):
    dense = values_for(dtype, math.prod(shape), seed, False).reshape(shape)
    mask = torch.from_numpy(np.random.default_rng(seed).random(shape) < 0.4)
    dense = torch.where(mask, dense, torch.zeros((), dtype=dtype))
    if layout == "coo_uncoalesced":
        idx = dense.to_sparse()._indices()
        vals = dense.to_sparse()._values()
        t = torch.sparse_coo_tensor(torch.cat([idx, idx], 1), torch.cat([vals, vals]), shape)  # duplicates
        truth_dense = dense * 2
    else:
        try:
            t = {"coo": dense.to_sparse, "csr": dense.to_sparse_csr, "csc": dense.to_sparse_csc}[layout]()
        except (RuntimeError, NotImplementedError):
            assume(False)
        truth_dense = dense
    report = inspect_object("s", t, {"s": t})
    nonzero = truth_dense[truth_dense != 0]
    specified = truth_dense.to_sparse().coalesce()._values() if layout.startswith("coo") else t.values()
    assert report.shape == list(shape) and report.strides is None
    assert report.details["sparse"]["implicit_zeros"] == math.prod(shape) - specified.numel()
    check_stats(report.stats, truth_values(specified), specified.numel(), kind_of(dtype))
    assert report.stats.count == specified.numel() >= nonzero.numel()
    renders(report)


@settings(max_examples=40, **SETTINGS)
@given(shape=st.tuples(st.integers(1, 5), st.integers(0, 5)), per_channel=st.booleans(), qdtype=st.sampled_from([torch.qint8, torch.quint8, torch.qint32]), seed=st.integers(0, 2**32 - 1), transpose=st.booleans())
def test_quantized_facts_match_dequantized_truth(shape, per_channel, qdtype, seed, transpose):
    x = values_for(torch.float32, math.prod(shape), seed, False).reshape(shape)
    if per_channel:
        scales = torch.from_numpy(np.random.default_rng(seed).uniform(0.01, 0.5, shape[0]))
        q = torch.quantize_per_channel(x, scales, torch.zeros(shape[0], dtype=torch.int64), 0, qdtype)
    else:
        q = torch.quantize_per_tensor(x, 0.05, 3 if qdtype == torch.quint8 else 0, qdtype)
        if transpose:
            q = q.t()
    report = inspect_object("q", q, {"q": q})
    truth = q.dequantize()
    assert report.shape == list(q.shape) and report.strides == list(q.stride())
    assert report.storage_nbytes == math.prod(shape) * q.element_size()
    assert report.details["quantized"]["scheme"].startswith("per_channel" if per_channel else "per_tensor")
    check_stats(report.stats, truth_values(truth), q.numel(), "other")
    renders(report)


@settings(max_examples=30, **SETTINGS)
@given(lengths=st.lists(st.integers(0, 5), min_size=1, max_size=4), jagged=st.booleans(), seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from([torch.float32, torch.float64, torch.int64]))
def test_nested_facts_match_components(lengths, jagged, seed, dtype):
    comps = [values_for(dtype, 3 * n, seed + i, dtype.is_floating_point).reshape(n, 3) for i, n in enumerate(lengths)]
    try:
        t = torch.nested.nested_tensor(comps, layout=torch.jagged if jagged else torch.strided)
    except (RuntimeError, ValueError):
        assume(False)
    report = inspect_object("n", t, {"n": t})
    allv = torch.cat([c.reshape(-1) for c in comps])
    assert report.numel == allv.numel() and report.shape is None
    assert report.details["nested"]["components"] == len(lengths)
    assert report.details["nested"]["component_shapes"] == [[n, 3] for n in lengths]
    assert report.storage_nbytes is not None and report.storage_nbytes >= allv.numel() * allv.element_size()
    check_stats(report.stats, truth_values(allv), allv.numel(), "other")
    renders(report)


@settings(max_examples=40, **SETTINGS)
@given(dtype=st.sampled_from(ALL_DTYPES), shape=shapes, fake=st.booleans(), view=st.booleans())
def test_meta_and_fake_tensors_have_layout_but_no_values(dtype, shape, fake, view):
    if fake:
        from torch._subclasses.fake_tensor import FakeTensorMode

        with FakeTensorMode():
            base = torch.empty(shape, dtype=dtype)
    else:
        base = torch.empty(shape, dtype=dtype, device="meta")
    t = base.transpose(0, -1) if view and base.dim() >= 2 else base
    report = inspect_object("m", t, {"m": t})
    assert report.shape == list(shape if t is base else t.shape) and report.strides == list(t.stride())
    assert report.storage_nbytes == math.prod(shape) * base.element_size()
    assert report.stats is None and "no data" in report.stats_note
    assert report.details.get("storage_allocated") is False
    renders(report)


# ---------------------------------------------------------------------------------------------
# aliasing against np.shares_memory


def np_view(base: np.ndarray, draw) -> np.ndarray:
    n = base.size
    start = draw(st.integers(0, n))
    stop = draw(st.integers(0, n))
    step = draw(st.sampled_from([1, 2, 3, -1, -2, 5]))
    v = base[start:stop:step]
    how = draw(st.sampled_from(["plain", "reshape", "as_strided", "bytes"]))
    if how == "reshape" and v.size % 2 == 0 and v.size:
        v = v.reshape(2, -1).T
    elif how == "as_strided" and v.size >= 2:
        v = as_strided(v, (v.size - 1, 2), (v.strides[0], v.strides[0]))
    elif how == "bytes" and v.size and v.flags.c_contiguous:
        v = v.view(np.uint8)[1:]
    return v


@settings(max_examples=80, **SETTINGS)
@given(data=st.data(), count=st.integers(2, 5), as_torch=st.booleans())
def test_aliases_match_np_shares_memory(data, count, as_torch):
    base = np.arange(40, dtype=np.float32)
    other = np.arange(10, dtype=np.float32)
    views = [np_view(base, data.draw) for _ in range(count)] + [other[::2]]
    ns = {f"v{i}": v for i, v in enumerate(views)}
    if as_torch:  # a torch tensor over the memory of one of them
        k = data.draw(st.integers(0, count - 1))
        try:
            ns["t"] = torch.from_numpy(views[k])
        except (ValueError, RuntimeError, TypeError):
            pass
    arrays = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in ns.items()}
    for name, obj in ns.items():
        report = inspect_object(name, obj, ns)
        got = {a.name for a in report.aliases}
        want = {k for k, a in arrays.items() if k != name and np.shares_memory(arrays[name], a, max_work=None)}
        assert got == want, (name, got, want)
        for a in report.aliases:
            assert a.relation in ("view", "shares memory", "same object")
    info = inspect_namespace(ns)
    group = {e.name: e.group for e in info.entries}
    for x in arrays:
        for y in arrays:
            if x < y and np.shares_memory(arrays[x], arrays[y], max_work=None):
                assert group[x] is not None and group[x] == group[y]


# ---------------------------------------------------------------------------------------------
# through the magic


@settings(max_examples=25, **SETTINGS)
@given(dtype=st.sampled_from(ALL_DTYPES), shape=shapes, seed=st.integers(0, 2**32 - 1), special=st.booleans(), numpy_twin=st.booleans())
def test_magic_never_raises_and_agrees_with_engine(shell, dtype, shape, seed, special, numpy_twin):
    t = values_for(dtype, math.prod(shape), seed, special).reshape(shape)
    shell.user_ns["x"] = t
    shell.user_ns.pop("y", None)
    twin_made = False
    if numpy_twin:
        try:
            shell.user_ns["y"] = t.numpy()
            twin_made = True
        except (TypeError, RuntimeError):
            shell.user_ns["y"] = np.zeros(1)  # an unrelated array
    r = shell.run_line_magic("tensorinfo", "x")
    assert r.shape == list(shape) and r.dtype == str(dtype)
    check_stats(r.stats, truth_values(t), t.numel(), kind_of(dtype))
    assert [a.name for a in r.aliases] == (["y"] if twin_made and t.numel() else [])
    bundle = r._repr_mimebundle_()
    assert "text/html" in bundle and "text/plain" in bundle
    ns = shell.run_line_magic("tensorinfo", "")
    assert "x" in {e.name for e in ns.entries}


def test_every_kind_never_raises_through_the_magic(shell):
    """The foundation issue's list of kinds that must never raise, one of each, via %tensorinfo."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.masked import masked_tensor
    from torch.testing._internal.two_tensor import TwoTensor

    with FakeTensorMode():
        fake = torch.empty(2, 3)
    with torch.inference_mode():
        inference = torch.ones(3)
    leaf = torch.ones(3, requires_grad=True)
    leaf.grad = torch.ones(3).to_sparse()

    class Weird(torch.nn.Module):
        def extra_repr(self):
            raise RuntimeError("boom")

    kinds = {
        "dense": torch.ones(2, 3),
        "zero_d": torch.tensor(1.5),
        "empty": torch.empty(0, 4),
        "uint64": torch.tensor([2**64 - 1], dtype=torch.uint64),
        "coo": torch.eye(3).to_sparse(),
        "csr": torch.eye(3).to_sparse_csr(),
        "bsr": torch.eye(4).to_sparse_bsr((2, 2)),
        "hybrid": torch.sparse_coo_tensor([[0, 2]], torch.ones(2, 3), (4, 3)),
        "quant": torch.quantize_per_tensor(torch.randn(4), 0.1, 0, torch.qint8),
        "quant4": torch.quantize_per_tensor(torch.randn(4, 4), 0.1, 3, torch.quint4x2),
        "nested": torch.nested.nested_tensor([torch.ones(2), torch.ones(3)]),
        "jagged": torch.nested.nested_tensor([torch.ones(2, 2), torch.ones(3, 2)], layout=torch.jagged),
        "meta": torch.empty(2, 3, device="meta"),
        "fake": fake,
        "complex32": torch.ones(2, dtype=torch.complex32),
        "inference": inference,
        "sparse_grad": leaf,
        "two": TwoTensor(torch.ones(2), torch.zeros(2)),
        "masked": masked_tensor(torch.ones(3), torch.tensor([True, False, True])),
        "param": torch.nn.Parameter(torch.ones(2)),
        "conj": torch.tensor([1 + 2j]).conj(),
        "np_str": np.array(["a", "b"]),
        "np_obj": np.array([None, 1], dtype=object),
        "np_record": np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]),
        "np_datetime": np.array(["2020-01-01"], dtype="datetime64[D]"),
        "np_scalar": np.float32(1.5),
        "np_longdouble": np.ones(2, dtype=np.longdouble),
        "np_clongdouble": np.ones(2, dtype=np.clongdouble),
        "np_bigendian": np.arange(3, dtype=">f8"),
        "np_readonly": np.frombuffer(b"\x00\x01\x02\x03", dtype=np.uint8),
        "np_from_tensor": torch.arange(10.0)[2:5].numpy(),
        "module_weird": Weird(),
        "module": torch.nn.Linear(2, 2),
    }
    shell.user_ns.update(kinds)
    for name, obj in kinds.items():
        r = shell.run_line_magic("tensorinfo", name)
        assert isinstance(r, (TensorInfo, ModuleInfo)), name
        renders(r)
    assert shell.run_line_magic("tensorinfo", "uint64").stats.max == 2**64 - 1
    assert shell.run_line_magic("tensorinfo", "np_clongdouble").stats.mean == 1.0
    assert shell.run_line_magic("tensorinfo", "np_from_tensor").storage_nbytes == 40
    assert shell.run_line_magic("tensorinfo", "inference").details.get("inference") is True
    assert shell.run_line_magic("tensorinfo", "quant4").nbytes == 8
    hybrid = shell.run_line_magic("tensorinfo", "hybrid")
    assert hybrid.details["sparse"]["implicit_zeros"] == 12 - 6
    ns = shell.run_line_magic("tensorinfo", "")
    renders(ns)
    assert {"dense", "coo", "module", "module_weird"} <= {e.name for e in ns.entries}


@settings(max_examples=40, **SETTINGS)
@given(dtype=st.sampled_from(ALL_DTYPES), n=st.integers(0, 300), seed=st.integers(0, 2**32 - 1), special=st.booleans(), chunk=st.sampled_from([7, 64, 1000]))
def test_accelerator_accumulator_agrees_with_ground_truth(dtype, n, seed, special, chunk):
    """The branch-free accumulator used on GPUs, run here on the CPU over small chunks."""
    from tensormagic.engine.tensorinfo.statistics.accelerator import device_stats
    from tensormagic.engine.tensorinfo.statistics.chunks import iter_chunks
    from tensormagic.engine.tensorinfo.statistics.values import value_kind

    t = values_for(dtype, n, seed, special)
    s = device_stats(torch.device("cpu"), iter_chunks(t, chunk), value_kind(dtype), "values")
    check_stats(s, truth_values(t), n, kind_of(dtype))


@settings(max_examples=40, **SETTINGS)
@given(dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64]), n=st.integers(1, 300), seed=st.integers(0, 2**32 - 1), special=st.booleans(), chunk=st.sampled_from([7, 64, 1000]))
def test_accelerator_float_fast_path_agrees_with_ground_truth(dtype, n, seed, special, chunk):
    """The accelerators' float path (a score of kernels per large chunk, NaN and inf counted and
    left out), run here on the CPU against the ground truth."""
    from tensormagic.engine.tensorinfo.statistics.accelerator import device_float_stats

    t = values_for(dtype, n, seed, special)
    check_stats(device_float_stats(t.reshape(-1), chunk=chunk), truth_values(t), n, kind_of(dtype))


@pytest.mark.parametrize("path", ["fused C pass", "pure torch"])
@settings(max_examples=30, **SETTINGS)
@given(
    dtype=st.sampled_from([torch.float32, torch.float64]),
    n=st.sampled_from([1, 2, 15, 16, 17, 33, 1000, 2**16 + 3, 3 * 2**16 + 1]),
    seed=st.integers(0, 2**32 - 1),
    special=st.booleans(),
    offset=st.sampled_from([0.0, -7.5, 1e4]),
)
def test_cpu_float_paths_agree_with_ground_truth(monkeypatch, path, dtype, n, seed, special, offset):
    """Both CPU paths for dense float32/float64 (the C helper and the pure torch loop), with the
    masked fallback when values are not finite, at sizes around the vector width and the chunks."""
    from tensormagic.engine.tensorinfo.statistics import fused, tensor_stats

    if path == "fused C pass" and not fused.available():
        pytest.skip("the C helper is not built here (test_the_c_helper_is_built says why it matters)")
    if path == "pure torch":
        monkeypatch.setattr(fused, "_fused", None)
    t = values_for(dtype, n, seed, special) + offset
    check_stats(tensor_stats(t), truth_values(t), n, kind_of(dtype))


def test_the_c_helper_is_built():
    """CI builds the optional C helper (scripts/setup.sh); without it %tensorinfo is several
    times slower on large CPU tensors, so a silent fallback there would be a regression."""
    from tensormagic.engine.tensorinfo.statistics import fused

    if os.environ.get("TENSORMAGIC_NO_C_HELPER"):
        pytest.skip("TENSORMAGIC_NO_C_HELPER is set: this run checks the pure torch path")
    if not fused.available() and not os.environ.get("CI"):
        pytest.skip("tensormagic/engine/tensorinfo/statistics/_fused.c is not built here: run scripts/setup.sh (needs gcc and Python headers)")
    assert fused.available(), "tensormagic.engine.tensorinfo.statistics._fused did not build: see pip's output in scripts/setup.sh"
    a = np.array([1.0, 0.0, 3.0, np.nan, np.inf], dtype=np.float32)
    lo, hi, s1, s2, zeros, nan, posinf, neginf, centre = fused._fused.stats(a.ctypes.data, "float32", [5], [4], 1.0, 2)
    assert (lo, hi, zeros, nan, posinf, neginf) == (0.0, 3.0, 1, 1, 1, 0)
    assert centre == pytest.approx(4 / 3) and s1 == pytest.approx(0.0, abs=1e-15) and s2 == pytest.approx(42 / 9)


def test_sampled_counts_are_labelled_as_the_samples():
    t = torch.zeros(1000)
    t[::10] = float("nan")
    text = render_text(inspect_object("t", t, budget=100))
    assert "NaN (in the sample)" in text and "zeros (in the sample)" in text and "(in a sample)" in text
    exact = render_text(inspect_object("t", t))
    assert "in the sample" not in exact and "100 NaN/inf!" in exact


def test_big_uncoalesced_coo_is_not_copied_and_says_so(monkeypatch):
    import tensormagic.engine.tensorinfo.tensor as engine

    t = torch.sparse_coo_tensor([[0, 0, 2]], [1.0, 2.0, 5.0], (4,))
    assert inspect_object("s", t).stats.max == 5.0 and inspect_object("s", t).stats.count == 2  # summed
    monkeypatch.setattr(engine, "MAX_COALESCE", 2)  # pretend 3 stored values are too many to copy
    r = inspect_object("s", t)
    assert r.stats.count == 3 and "NOT summed" in r.stats.over
    assert r.details["sparse"]["coalesced"] is False


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64, torch.bfloat16, torch.float64])
def test_gradient_norm_is_exact_without_a_double_copy(dtype):
    w = torch.zeros(3000, dtype=dtype, requires_grad=True)
    w.grad = torch.arange(3000, dtype=torch.float64).to(dtype)
    expected = float(w.grad.to(torch.complex128 if dtype.is_complex else torch.float64).abs().norm())
    grad = inspect_object("w", w).grad
    assert grad.endswith(f"norm {expected:.4g}")


@pytest.mark.parametrize("make", [lambda v: torch.tensor(v), lambda v: np.array(v)], ids=["torch", "numpy"])
def test_bool_histogram_counts_false_and_true(make):
    r = inspect_object("b", make([True, False, True, True]))
    assert r.histogram is not None and r.histogram.boolean
    assert r.histogram.counts == [1, 3]
    text = render_text(r)
    assert "False │" in text and "True │" in text


def test_integer_histogram_edges_are_exact_near_2_64():
    t = torch.tensor([2**64 - 1, 2**64 - 2, 2**64 - 2], dtype=torch.uint64)
    r = inspect_object("u", t)
    assert r.stats.min == 2**64 - 2 and r.stats.max == 2**64 - 1
    assert r.histogram.integer and r.histogram.counts == [2, 1]
    assert r.histogram.edges[:2] == [2**64 - 2, 2**64 - 1]
    big = torch.tensor([2**62 + 1, 2**62 + 3, 2**62 + 3])  # neighbours that float64 merges
    assert inspect_object("b", big).histogram.counts == [1, 0, 2]
    assert "18,446,744,073,709,551,615" in render_text(r)


# ---------------------------------------------------------------------------------------------
# masked arrays, lazy modules and subclasses


MASK_DTYPES = [np.float32, np.float64, np.int16, np.uint64, np.bool_, np.complex64, np.dtype(">f8")]


@settings(max_examples=60, **SETTINGS)
@given(dtype=st.sampled_from(MASK_DTYPES), shape=shapes.filter(lambda s: len(s) >= 1), layout=st.sampled_from(["contiguous", "reverse", "transpose", "step_reverse"]), mask_kind=st.sampled_from(["random", "none", "all", "nomask"]), seed=st.integers(0, 2**32 - 1), special=st.booleans(), budget=st.sampled_from([16, None]))
def test_masked_array_statistics_are_over_the_unmasked_values(dtype, shape, layout, mask_kind, seed, special, budget):
    data = np_layout(np_values(dtype, math.prod(shape), seed, special).reshape(shape), layout)
    rng = np.random.default_rng(seed)
    mask = {"random": rng.random(data.shape) < 0.4, "none": np.zeros(data.shape, bool), "all": np.ones(data.shape, bool), "nomask": np.ma.nomask}[mask_kind]
    kind = np.dtype(dtype).kind
    filler = True if kind == "b" else (1e30 if kind in "fc" else np.iinfo(np.dtype(dtype)).max)
    ma = np.ma.masked_array(data, mask=mask, fill_value=filler)
    if mask_kind != "nomask":
        np.ma.getdata(ma)[np.ma.getmaskarray(ma)] = filler  # the filler lies in the data: it must not count
    report = inspect_object("ma", ma, {"ma": ma, "data": data}, **({} if budget is None else {"budget": budget}))
    kept = ma.compressed()
    masked = int(np.ma.getmaskarray(ma).sum())
    s = report.stats
    assert s.masked == masked and s.count == kept.size
    assert report.details["masked"]["masked"] == masked
    if kept.dtype.kind == "b":
        truth = kept.astype(np.int64)
    elif kept.dtype.kind in "iu":
        truth = np.array([int(v) for v in kept.tolist()], dtype=object)
    elif kept.dtype.kind == "c":
        truth = np.abs(kept.astype(np.complex128))
    else:
        truth = kept.astype(np.float64)
    if budget is None or ma.size <= budget:
        check_stats(s, truth, kept.size, kind_of(kept.dtype))
    elif s.min is not None:  # sampled: the sample's extremes lie within the unmasked values'
        finite = [v for v in truth.tolist() if v == v and abs(v) != math.inf]
        assert not s.exact and min(finite) <= s.min <= s.max <= max(finite)
    if report.histogram is not None:
        assert sum(report.histogram.counts) <= kept.size
    renders(report)


LAZY_MODULES = {
    "linear": lambda: torch.nn.LazyLinear(3),
    "conv1d": lambda: torch.nn.LazyConv1d(2, 3),
    "batchnorm": lambda: torch.nn.LazyBatchNorm1d(),
    "stack": lambda: torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LazyLinear(2), torch.nn.LazyBatchNorm1d()),
}
LAZY_INPUTS = {"linear": (2, 5), "conv1d": (2, 3, 8), "batchnorm": (4, 6), "stack": (3, 4)}


@settings(max_examples=30, **SETTINGS)
@given(kind=st.sampled_from(sorted(LAZY_MODULES)), materialize=st.booleans(), move=st.booleans())
def test_lazy_modules_are_described_before_and_after_their_first_forward(shell, kind, materialize, move):
    from tensormagic.engine.naming import UNINITIALIZED

    module = LAZY_MODULES[kind]()
    if materialize:
        module(torch.randn(*LAZY_INPUTS[kind]))
    shell.user_ns.update(m=module, x=torch.ones(2))
    if move:
        shell.run_line_magic("todevice", "m x meta")
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    lazy = [n for n, t in tensors if isinstance(t, torch.nn.parameter.UninitializedTensorMixin)]
    assert (len(lazy) > 0) == (not materialize)
    r = shell.run_line_magic("tensorinfo", "m")
    assert isinstance(r, ModuleInfo) and r.uninitialized == len(lazy)
    assert r.parameters == sum(p.numel() for n, p in module.named_parameters() if n not in lazy)
    assert {row.name for row in r.rows if row.shape is None} == set(lazy)
    assert all(row.device == ("meta" if move else "cpu") for row in r.rows)
    for name in lazy:
        t = shell.run_line_magic("tensorinfo", f"m.get_parameter({name!r})" if any(n == name for n, _ in module.named_parameters()) else f"m.get_buffer({name!r})")
        assert t.shape is None and t.stats is None and UNINITIALIZED in t.stats_note
        renders(t)
    renders(r)
    renders(shell.run_line_magic("tensorinfo", ""))
    renders(shell.run_line_magic("todevice", ""))


class PlainSubclass(torch.Tensor):
    pass


class PassThrough(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return super().__torch_function__(func, types, args, kwargs or {})


class ParameterSubclass(torch.nn.Parameter):
    pass


class ArraySubclass(np.ndarray):
    pass


def subclassed(kind: str, base: torch.Tensor):
    if kind == "plain":
        return base.as_subclass(PlainSubclass)
    if kind == "torch_function":
        return base.as_subclass(PassThrough)
    if kind == "parameter":
        return ParameterSubclass(base, requires_grad=False)
    if kind == "numpy_subclass":
        return base.numpy().view(ArraySubclass)
    if kind == "matrix":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            return np.asmatrix(base.numpy().reshape(base.shape[0], -1))
    raise AssertionError(kind)


@settings(max_examples=60, **SETTINGS)
@given(kind=st.sampled_from(["plain", "torch_function", "parameter", "numpy_subclass", "matrix"]), dtype=st.sampled_from([torch.float32, torch.float64, torch.int32, torch.float16]), n=st.integers(1, 200), seed=st.integers(0, 2**32 - 1), special=st.booleans())
def test_subclasses_are_described_by_their_values(kind, dtype, n, seed, special):
    base = values_for(dtype, 2 * n, seed, special).reshape(2, n)
    obj = subclassed(kind, base)
    report = inspect_object("s", obj, {"s": obj, "base": base})
    assert isinstance(report, TensorInfo) and report.shape == list(obj.shape)
    check_stats(report.stats, truth_values(base), base.numel(), kind_of(dtype))
    assert "base" in {a.name for a in report.aliases}  # the same memory, whatever the class
    assert report.type != "torch.Tensor" and report.type != "numpy.ndarray"
    renders(report)


def test_a_subclass_that_refuses_is_a_one_line_error_not_a_traceback():
    from tensormagic.engine.tensorinfo import UninspectableError

    class Refuses(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") in ("numel", "element_size"):
                raise NotImplementedError(f"{func.__name__} is not for us")
            return super().__torch_function__(func, types, args, kwargs or {})

    t = torch.ones(3).as_subclass(Refuses)
    with pytest.raises(UninspectableError) as info:
        inspect_object("t", t, {"t": t})
    assert "\n" not in str(info.value) and "Refuses.__torch_function__ refuses" in str(info.value)
    info_ns = inspect_namespace({"t": t, "u": torch.ones(2)})
    assert any(n.startswith("t (") and "could not be read" in n for n in info_ns.notes)
    assert {e.name for e in info_ns.entries} == {"t", "u"}
