"""Odd objects through the real magics: each gets a true description or a one-line UsageError,
and none of them, merely present in the namespace, breaks %tensorinfo or %todevice of the others.

The objects: lazy modules and uninitialized parameters/buffers, NumPy masked arrays, objects
with a hostile ``__getattr__`` or a lying ``__class__``, ``__torch_function__`` subclasses that
refuse ops, float64 values near the float64 maximum, ``np.matrix``, ``np.memmap`` and objects
whose ``__array__`` is slow or raises.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from IPython.core.error import UsageError

from tensormagic.engine.naming import UNINITIALIZED
from tensormagic.engine.tensorinfo import ModuleInfo, NamespaceInfo, TensorInfo
from tensormagic.engine.tensorinfo.statistics import tensor_stats
from tensormagic.engine.tensorinfo.statistics.accelerator import device_float_stats, device_stats
from tensormagic.engine.tensorinfo.statistics.chunks import iter_chunks
from tensormagic.render.display import render_html, render_text
from tests.conftest import run, shown_as_one_line_usage_error

ODD = '''
import numpy as np, torch
calls = []

class Hostile:
    def __getattr__(self, name):
        raise RuntimeError("no attributes here")

class Liar:
    @property
    def __class__(self):
        return torch.Tensor

class Refuser(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("element_size", "numel", "__get__"):
            raise RuntimeError(f"{func.__name__} is refused")
        return super().__torch_function__(func, types, args, kwargs or {})

class SlowArray:
    def __array__(self, dtype=None, copy=None):
        calls.append("slow")
        import time; time.sleep(5)
        return np.zeros(3)

class BadArray:
    def __array__(self, dtype=None, copy=None):
        calls.append("bad")
        raise ValueError("cannot make an array")

lazy = torch.nn.LazyLinear(3)
lazybn = torch.nn.LazyBatchNorm1d()
ma = np.ma.masked_array([1.0, 2.0, 1e20], mask=[0, 0, 1])
hostile = Hostile()
liar = Liar()
refuser = torch.ones(3).as_subclass(Refuser)
huge = torch.full((10,), 1.7e308, dtype=torch.float64)
import warnings
with warnings.catch_warnings():
    warnings.simplefilter('ignore', PendingDeprecationWarning)  # NumPy discourages np.matrix
    mat = np.matrix([[1, 2], [3, 4]])
slow = SlowArray()
bad = BadArray()
t = torch.arange(6.0)
a = np.arange(4.0)
view = t[1:]
'''

OTHERS_WORK = ["t", "a", "view", "t[0]", ""]


def namespace_ids(shell) -> dict[str, int]:
    return {k: id(v) for k, v in shell.user_ns.items() if not k.startswith("_")}


def others_still_work(shell) -> None:
    """%tensorinfo and %todevice of the ordinary objects, whatever else the namespace holds."""
    for line in OTHERS_WORK:
        r = shell.run_line_magic("tensorinfo", line)
        render_text(r), render_html(r)
    info = shell.run_line_magic("tensorinfo", "view")
    assert {x.name for x in info.aliases} == {"t"} and info.stats.max == 5.0
    placement = shell.run_line_magic("todevice", "")
    render_text(placement), render_html(placement)
    assert {"t", "a", "view"} <= {row.name for row in placement.placement}
    assert shell.user_ns["calls"] == []  # no __array__ was ever called


# ---------------------------------------------------------------------------------------------
# lazy modules and uninitialized parameters and buffers


def test_lazy_module_is_described_not_a_traceback(shell):
    run(shell, ODD)
    r = shell.run_line_magic("tensorinfo", "lazy")
    assert isinstance(r, ModuleInfo) and r.uninitialized == 2 and r.parameters == 0
    assert any(UNINITIALIZED in n and "weight, bias" in n for n in r.notes)
    assert [(row.name, row.shape, row.note) for row in r.rows] == [("weight", None, UNINITIALIZED), ("bias", None, UNINITIALIZED)]
    assert "2 uninitialized" in r.summary()
    assert "? (uninitialized)" in render_text(r)
    bn = shell.run_line_magic("tensorinfo", "lazybn")
    assert bn.uninitialized == 4 and {row.kind for row in bn.rows} == {"parameter", "buffer"}


@pytest.mark.parametrize("expr", ["lazy.weight", "lazybn.running_mean"])
def test_uninitialized_tensor_is_described(shell, expr):
    run(shell, ODD)
    r = shell.run_line_magic("tensorinfo", expr)
    assert isinstance(r, TensorInfo) and r.shape is None and r.numel == 0 and r.stats is None
    assert r.type in ("torch.nn.UninitializedParameter", "torch.nn.UninitializedBuffer")
    assert r.dtype == "torch.float32" and r.device == "cpu" and r.details == {"uninitialized": True}
    assert UNINITIALIZED in r.stats_note and any("first forward" in n for n in r.notes)
    assert "uninitialized" in render_text(r) and "uninitialized" in render_html(r)


def test_lazy_modules_in_the_namespace_table_and_placement(shell):
    run(shell, ODD + "w = lazy.weight\n")
    ns = shell.run_line_magic("tensorinfo", "")
    assert isinstance(ns, NamespaceInfo)
    entry = {e.name: e for e in ns.entries}
    assert entry["w"].shape is None and entry["w"].nbytes == 0 and entry["lazy"].dtype == "-"
    assert any(n.startswith("w: " + UNINITIALIZED) for n in ns.notes)
    assert any(n.startswith("lazy: a lazy module") for n in ns.notes)
    rows = {row.name: row for row in shell.run_line_magic("todevice", "").placement}
    assert rows["w"].note == UNINITIALIZED and rows["w"].shape is None
    assert "a lazy module: 2 " + UNINITIALIZED in rows["lazy"].note


# ---------------------------------------------------------------------------------------------
# NumPy masked arrays


def test_masked_array_statistics_leave_the_masked_values_out(shell):
    run(shell, ODD)
    r = shell.run_line_magic("tensorinfo", "ma")
    s = r.stats
    assert (s.min, s.max, s.mean, s.count, s.masked) == (1.0, 2.0, 1.5, 2, 1)
    assert s.std == pytest.approx(math.sqrt(0.5), rel=1e-15) and s.exact
    assert "2 unmasked values; 1 masked value left out" in s.over
    assert r.details["masked"] == {"masked": 1, "unmasked": 2, "fill_value": "1e+20"}
    assert r.histogram is not None and sum(r.histogram.counts) == 2 and r.histogram.edges[-1] == 2.0
    assert all("mask is dropped" in c.detail for c in r.conversion[1:])
    text = render_text(r)
    assert "masked (left out)" in text and "1e+20" not in text.split("Values")[1].split("Autograd")[0].replace("fill_value", "")


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.complex128, np.bool_, ">f8"])
def test_masked_arrays_of_every_kind_match_their_compressed_values(dtype):
    from tensormagic.engine.tensorinfo import inspect_object

    rng = np.random.default_rng(0)
    data = (rng.normal(size=(300, 7)) * 10).astype(dtype)
    mask = rng.random((300, 7)) < 0.3
    ma = np.ma.masked_array(data, mask=mask)[::-1, ::2]
    kept = ma.compressed()
    s = inspect_object("ma", ma).stats
    assert s.count == kept.size and s.masked == int(np.ma.getmaskarray(ma).sum())
    values = np.abs(kept.astype(np.complex128)) if np.dtype(dtype).kind == "c" else kept.astype(np.float64)
    assert s.min == values.min() and s.max == values.max()
    assert s.mean == pytest.approx(values.mean(), rel=1e-12)
    sampled = inspect_object("ma", ma, budget=100).stats
    assert not sampled.exact and sampled.masked == s.masked and sampled.count == kept.size
    assert values.min() <= sampled.min <= sampled.max <= values.max()


def test_masked_array_without_a_mask_counts_zero_masked():
    from tensormagic.engine.tensorinfo import inspect_object

    s = inspect_object("m", np.ma.masked_array(np.arange(5.0))).stats
    assert s.masked == 0 and s.count == 5 and s.mean == 2.0


def test_masked_array_refuses_to_move_and_nothing_changes(shell, capsys):
    run(shell, ODD + "batch = {'x': t, 'm': ma}\n")
    before = namespace_ids(shell)
    for line in ("ma cpu", "batch t meta"):
        err = shown_as_one_line_usage_error(shell, capsys, f"%todevice {line}")
        assert "masked array (1 of 3 values masked)" in str(err) and "would become data" in str(err)
        assert namespace_ids(shell) == before
    assert shell.user_ns["batch"]["x"] is shell.user_ns["t"] and shell.user_ns["t"].device.type == "cpu"
    row = {r.name: r for r in shell.run_line_magic("todevice", "").placement}["ma"]
    assert "refuses it" in row.note


# ---------------------------------------------------------------------------------------------
# hostile __getattr__, lying __class__, __torch_function__ subclasses that refuse


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("hostile", "hostile is a __main__.Hostile, not an array, tensor or torch.nn.Module"),
        ("liar", "liar is a __main__.Liar that claims to be a torch.Tensor"),
        ("refuser", r"refuser \(__main__.Refuser\) cannot be described: RuntimeError: __get__ is refused; Refuser.__torch_function__ refuses"),
        ("slow", "slow is a __main__.SlowArray, not an array or tensor; convert it with np.asarray"),
        ("bad", "bad is a __main__.BadArray, not an array or tensor; convert it with np.asarray"),
    ],
)
def test_odd_object_is_a_one_line_usage_error(shell, capsys, name, message):
    run(shell, ODD)
    with pytest.raises(UsageError, match=message):
        shell.run_line_magic("tensorinfo", name)
    shown_as_one_line_usage_error(shell, capsys, f"%tensorinfo {name}")
    before = namespace_ids(shell)
    err = shown_as_one_line_usage_error(shell, capsys, f"%todevice {name} meta")
    assert str(err).startswith("nothing moved:")
    assert namespace_ids(shell) == before
    assert shell.user_ns["calls"] == []


def test_odd_objects_never_break_the_others(shell):
    run(shell, ODD)
    others_still_work(shell)
    ns = shell.run_line_magic("tensorinfo", "")
    assert any(n.startswith("refuser (__main__.Refuser) could not be read: RuntimeError") for n in ns.notes)
    assert {"hostile", "liar", "slow", "bad"}.isdisjoint({e.name for e in ns.entries})
    placement = shell.run_line_magic("todevice", "")
    row = {r.name: r for r in placement.placement}["refuser"]
    assert row.kind == "unreadable" and row.note.startswith("could not be read: RuntimeError")
    assert "(1 could not be read)" in placement.summary()
    refuser = shell.user_ns["refuser"]
    moved = shell.run_line_magic("todevice", "t view meta")
    assert shell.user_ns["t"].is_meta and moved.error is None
    everything = shell.run_line_magic("todevice", "--all meta")
    assert any(n.startswith("left as it is: refuser (__main__.Refuser) could not be read") for n in everything.notes)
    assert shell.user_ns["huge"].is_meta and shell.user_ns["refuser"] is refuser  # left alone


# ---------------------------------------------------------------------------------------------
# values near the float64 maximum


def scaled_truth(values: np.ndarray) -> tuple[float, float]:
    """Mean and std of finite float64 values computed on a scaled copy (exact powers of two)."""
    finite = values[np.isfinite(values)] * 2.0**-1000
    return float(finite.mean()) * 2.0**1000, float(finite.std(ddof=1)) * 2.0**1000


def test_huge_float64_values_have_a_mean_and_std(shell):
    run(shell, ODD + "hugenp = np.full(10, 1.7e308)\nmixed = torch.tensor([1.7e308, -1.7e308, 1e308, 0.0] * 50, dtype=torch.float64)\n")
    for name in ("huge", "hugenp"):
        s = shell.run_line_magic("tensorinfo", name).stats
        assert (s.min, s.max, s.mean, s.std) == (1.7e308, 1.7e308, 1.7e308, 0.0)
    r = shell.run_line_magic("tensorinfo", "mixed")
    mean, std = scaled_truth(shell.user_ns["mixed"].numpy())
    assert r.stats.mean == pytest.approx(mean, rel=1e-12) and r.stats.std == pytest.approx(std, rel=1e-12)
    assert all(math.isfinite(e) for e in r.histogram.edges) and sum(r.histogram.counts) == 200


@pytest.mark.parametrize("path", ["dense", "strided", "with NaN", "accelerator float", "accelerator chunks", "complex"])
def test_every_statistics_path_scales_huge_values(path):
    x = torch.tensor([1.7e308, -1.7e308, 1e308, 0.0, 1.0, -3e307] * 40, dtype=torch.float64)
    if path == "strided":
        x = x.reshape(20, 12)[:, ::2]
    if path == "with NaN":
        x = x.clone()
        x[::7] = math.nan
    if path == "complex":
        z = torch.complex(x / 4, x / 4)  # |z| stays finite: sqrt(2)/4 of the value
        s = device_stats(torch.device("cpu"), iter_chunks(z, 16), "complex", "values")
        truth = np.abs(z.numpy())
    elif path == "accelerator float":
        s = device_float_stats(x.reshape(-1), chunk=16)
        truth = x.numpy().reshape(-1)
    elif path == "accelerator chunks":
        s = device_stats(torch.device("cpu"), iter_chunks(x, 16), "float", "values")
        truth = x.numpy().reshape(-1)
    else:
        s = tensor_stats(x)
        truth = x.contiguous().numpy().reshape(-1)
    mean, std = scaled_truth(truth)
    assert s.mean == pytest.approx(mean, rel=1e-12) and s.std == pytest.approx(std, rel=1e-12)
    assert s.nan == int(np.isnan(truth).sum())


# ---------------------------------------------------------------------------------------------
# np.matrix, np.memmap, __array__ that is slow or raises


def test_np_matrix_is_described_and_moves_as_a_plain_tensor(shell):
    run(shell, ODD)
    r = shell.run_line_magic("tensorinfo", "mat")
    assert r.type == "numpy.matrix" and r.shape == [2, 2] and (r.stats.min, r.stats.max, r.stats.mean) == (1, 4, 2.5)
    assert any("numpy.matrix" in n and "matrix multiplication" in n for n in r.notes)
    moved = shell.run_line_magic("todevice", "mat cpu")
    assert type(shell.user_ns["mat"]) is torch.Tensor and shell.user_ns["mat"].shape == (2, 2)
    assert any("was a numpy.matrix" in n for n in moved.moves[0].notes)


def test_np_memmap_is_said_file_backed(shell, tmp_path):
    path = tmp_path / "values.dat"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(1000, 3))
    mm[:] = np.arange(3000, dtype=np.float32).reshape(1000, 3)
    mm.flush()
    shell.user_ns.update(np=np, mm=np.memmap(path, dtype=np.float32, mode="r", shape=(1000, 3)))
    for expr in ("mm", "mm[10:20]", "np.asarray(mm)"):
        r = shell.run_line_magic("tensorinfo", expr)
        assert r.details["file"] == {"file": str(path), "mode": "r"}, expr
        assert any(n.startswith(f"file-backed (np.memmap of {str(path)!r}") for n in r.notes)
    r = shell.run_line_magic("tensorinfo", "mm")
    assert (r.stats.min, r.stats.max, r.stats.mean, r.stats.count) == (0.0, 2999.0, 1499.5, 3000)
    assert "file" in render_text(r)
    moved = shell.run_line_magic("todevice", "mm cpu")
    assert any("file-backed" in n for n in moved.moves[0].notes)


def test_array_whose_owner_has_a_raising___array___is_never_asked(shell):
    run(shell, ODD + '''
class Owner:
    def __init__(self):
        self.data = np.arange(8.0)
        self.__array_interface__ = self.data.__array_interface__
    def __array__(self, dtype=None, copy=None):
        calls.append("owner")
        raise ValueError("never call me")
owned = np.asarray(Owner())
''')
    r = shell.run_line_magic("tensorinfo", "owned")
    assert r.storage_nbytes == 64 and r.stats.max == 7.0
    assert shell.user_ns["calls"] == []
