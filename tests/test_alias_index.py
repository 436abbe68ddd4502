"""The alias index gives the answers a full scan of the namespace gives, whatever happens to it.

``find_aliases`` keeps an index between calls (``tensormagic/engine/tensorinfo/alias_index.py``)
so that ``%tensorinfo x`` in a namespace of 100,000 arrays stays fast.  Here a namespace goes
through random sequences of what notebooks do (new arrays and tensors, views, ``from_numpy``
and ``.numpy()``, rebinding and deleting names, ``set_``, ``.data =``, ``resize_``, in-place
``transpose_`` and ``shape =``, modules whose parameters are replaced, objects that die and
whose ids are reused, hidden names), and after every step the index's answers must equal a
brute-force scan's: the same names, relations and order.
"""

from __future__ import annotations

import gc
import time
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.bench_namespace import big_namespace
from tensormagic.engine.namespace import named_arrays
from tensormagic.engine.tensorinfo import find_aliases, memory

warnings.filterwarnings("ignore", category=UserWarning)


def brute_force(name, obj, ns, hidden=frozenset()):
    """The aliases by the definition: every named array and module tensor, checked exactly."""
    target = memory.memory_region(obj)
    found = []
    for other in named_arrays(ns, hidden):
        if other.name == name:
            continue
        r = memory.memory_region(other.obj)
        if other.obj is not obj and (target is None or r is None or r.space != target.space or r.hi <= target.lo or target.hi <= r.lo):
            continue
        rel = memory.relation(obj, other.obj, target, r)
        if rel is not None:
            found.append((other.name, rel[0]))
    return found


def indexed(name, obj, ns, hidden=frozenset()):
    return [(a.name, a.relation) for a in find_aliases(name, obj, ns, hidden)]


OPS = ["array", "tensor", "view", "from_numpy", "numpy", "rebind", "delete", "set_", "data", "resize_", "transpose_", "shape", "module", "param", "scalar", "hide", "collect"]


def apply(op: str, pick: int, ns: dict, hidden: set, rng: np.random.Generator) -> None:
    """Do ``op`` to the namespace (an op torch or NumPy refuses here, e.g. resizing the storage
    of a from_numpy tensor, is skipped)."""
    try:
        _apply(op, pick, ns, hidden, rng)
    except (RuntimeError, ValueError, TypeError, AttributeError):
        pass


def _apply(op: str, pick: int, ns: dict, hidden: set, rng: np.random.Generator) -> None:
    names = [n for n in ns if not n.startswith("_")]
    fresh = f"v{len(ns)}_{pick}"
    objs = [ns[n] for n in names]
    tensors = [n for n in names if type(ns[n]) is torch.Tensor]
    arrays = [n for n in names if type(ns[n]) is np.ndarray]
    if op == "array" or not names:
        ns[fresh] = rng.random(int(rng.integers(1, 40)))
    elif op == "tensor":
        ns[fresh] = torch.arange(float(rng.integers(1, 40)))
    elif op == "view":
        src = objs[pick % len(objs)]
        if isinstance(src, (np.ndarray, torch.Tensor)) and src.ndim == 1 and len(src) > 2:
            ns[fresh] = src[pick % 3 :: 1 + pick % 2]
    elif op == "from_numpy" and arrays:
        ns[fresh] = torch.from_numpy(ns[arrays[pick % len(arrays)]])
    elif op == "numpy" and tensors:
        t = ns[tensors[pick % len(tensors)]]
        if not t.requires_grad:
            ns[fresh] = t.numpy()
    elif op == "rebind":
        ns[names[pick % len(names)]] = objs[(pick * 7 + 1) % len(objs)]
    elif op == "delete":
        del ns[names[pick % len(names)]]
    elif op == "set_" and len(tensors) >= 2:
        a, b = ns[tensors[pick % len(tensors)]], ns[tensors[(pick + 1) % len(tensors)]]
        if a.dtype == b.dtype:
            a.set_(b.untyped_storage(), b.storage_offset(), b.shape, b.stride())
    elif op == "data" and len(tensors) >= 2:
        a, b = ns[tensors[pick % len(tensors)]], ns[tensors[(pick + 3) % len(tensors)]]
        a.data = b
    elif op == "resize_" and tensors:
        t = ns[tensors[pick % len(tensors)]]
        if t.is_contiguous() and t._base is None:
            t.resize_(t.numel() + 1000)  # a bigger storage: somewhere else
    elif op == "transpose_" and tensors:
        t = ns[tensors[pick % len(tensors)]]
        t.unsqueeze_(0).transpose_(0, -1)
    elif op == "shape" and arrays:
        a = ns[arrays[pick % len(arrays)]]
        if a.size and a.flags.c_contiguous:
            a.shape = (a.size, 1)
    elif op == "module":
        ns[fresh] = torch.nn.Linear(2, 2)
    elif op == "param":
        mods = [n for n in names if isinstance(ns[n], torch.nn.Module)]
        if mods:
            module = ns[mods[pick % len(mods)]]
            if pick % 2 and tensors:
                module.weight.data = ns[tensors[pick % len(tensors)]].reshape(-1)[:1].expand(2, 2)
            else:
                module.weight = torch.nn.Parameter(torch.zeros(2, 2))
    elif op == "scalar":
        ns[fresh] = np.float64(pick)
    elif op == "hide":
        hidden ^= {names[pick % len(names)]}
    elif op == "collect":
        gc.collect()  # dead objects' ids are free to be reused by the next ones


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 1000)), min_size=1, max_size=25), seed=st.integers(0, 2**32 - 1))
def test_the_index_answers_like_a_full_scan(steps, seed):
    rng = np.random.default_rng(seed)
    ns: dict = {"base": rng.random(30), "tb": torch.arange(30.0)}
    hidden: set = set()
    for op, pick in steps:
        apply(op, pick, ns, hidden, rng)
        live = [n for n in ns if not n.startswith("_") and n not in hidden]
        for name in live[-4:] + live[:2]:
            obj = ns[name]
            if isinstance(obj, (np.ndarray, torch.Tensor, np.generic)):
                assert indexed(name, obj, ns, frozenset(hidden)) == brute_force(name, obj, ns, frozenset(hidden)), (op, name)


def test_a_small_array_among_100000_is_answered_from_the_index():
    ns = big_namespace(100_000)
    x = torch.ones(3)
    ns["x"] = x
    ns["y"] = x[1:]
    assert indexed("x", x, ns) == brute_force("x", x, ns) == [("y", "view")]
    best = min(_timed(lambda: find_aliases("x", x, ns)) for _ in range(3))
    assert best < 0.5, best  # a full scan takes over 0.5 s here; the index well under (50 ms on a quiet machine)
    ns["a4"].set_(x.untyped_storage(), 0, (3,), (1,))  # an old name now aliases x, in place
    assert indexed("x", x, ns) == brute_force("x", x, ns) == [("a4", "shares memory"), ("y", "view")]


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_the_index_pins_nothing():
    import weakref

    ns = {"t": torch.ones(4), "a": np.ones(4)}
    refs = [weakref.ref(ns["t"]), weakref.ref(ns["a"])]
    find_aliases("t", ns["t"], ns)
    ns.clear()
    gc.collect()
    assert all(r() is None for r in refs)


@pytest.mark.parametrize("kind", ["sparse", "nested", "meta", "quantized"])
def test_tensors_without_a_plain_storage_are_still_named(kind):
    t = {
        "sparse": lambda: torch.eye(3).to_sparse(),
        "nested": lambda: torch.nested.nested_tensor([torch.ones(2), torch.ones(3)]),
        "meta": lambda: torch.empty(3, device="meta"),
        "quantized": lambda: torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.qint8),
    }[kind]()
    ns = {"t": t, "same": t, "other": torch.ones(2)}
    assert indexed("t", t, ns) == brute_force("t", t, ns) == [("same", "same object")]
