"""%%autograd's engine: gradients against hand-derived formulas, big graphs, the source analysis,
the recorder's state restoration and --check."""

from __future__ import annotations

import math
import sys
import time

import pytest
import torch

from tensormagic.engine.autograd import AutogradOptions, AutogradSession
from tensormagic.engine.autograd.graph import find_repeats, topological_order
from tensormagic.engine.autograd.lines import MARKER, LineSpans, instrument, line_marker
from tensormagic.engine.autograd.options import split_names
from tensormagic.engine.autograd.source import analyse_source
from tensormagic.engine.autograd.summary import summarise
from tensormagic.engine.autograd.walk import walk_graph
from tests.conftest import run


@pytest.fixture
def ag(shell):
    run(shell, "import torch\nimport torch.nn as nn\nimport math")
    return shell


def grads(shell, code: str, options: str = "") -> dict[str, object]:
    report = run(shell, f"%%autograd {options}\n{code}")
    return {g.wrt: g.grad for g in report.gradients}


def close(a, b, tol=1e-5) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b))
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


# -- hand-derived formulas ----------------------------------------------------------------------


def test_polynomial(ag):
    g = grads(ag, "x = torch.tensor(2., requires_grad=True)\ny = 3 * x**3 - 2 * x**2 + x - 7\ny.backward()")
    assert close(g["x"], 9 * 4 - 4 * 2 + 1)  # 9x^2 - 4x + 1 at 2 = 29


def test_two_variable_polynomial(ag):
    g = grads(ag, "a = torch.tensor(1.5, requires_grad=True)\nb = torch.tensor(-2., requires_grad=True)\nf = a**2 * b + b**3")
    assert close(g["a"], 2 * 1.5 * -2.0) and close(g["b"], 1.5**2 + 3 * 4.0)


def test_sin_exp(ag):
    g = grads(ag, "t = torch.tensor(0.7, requires_grad=True)\ny = torch.sin(t) * torch.exp(2 * t)\ny.backward()")
    expected = math.cos(0.7) * math.exp(1.4) + 2 * math.sin(0.7) * math.exp(1.4)
    assert close(g["t"], expected)


def test_matrix_product(ag):
    g = grads(
        ag,
        "A = torch.tensor([[1., 2.], [3., 4.]], requires_grad=True)\n"
        "B = torch.tensor([[5., 6.], [7., 8.]], requires_grad=True)\n"
        "s = (A @ B).sum()\ns.backward()",
    )
    # d sum(AB)/dA = 1 B^T ; d sum(AB)/dB = A^T 1
    assert g["A"] == [[11.0, 15.0], [11.0, 15.0]]
    assert g["B"] == [[4.0, 4.0], [6.0, 6.0]]


def test_data_dependent_loop(ag):
    # doubles z while it is below 10: z = x * 2^k with k data-dependent (x=1.5 -> 3, 6, 12: k=3)
    g = grads(ag, "x = torch.tensor(1.5, requires_grad=True)\nz = x\nwhile z < 10:\n    z = z * 2\nz.backward()")
    assert close(g["x"], 8.0)
    g = grads(ag, "x = torch.tensor(4., requires_grad=True)\nz = x\nwhile z < 10:\n    z = z * 2\nz.backward()")
    assert close(g["x"], 4.0)  # 4 -> 8 -> 16: k = 2


def test_branch(ag):
    g = grads(ag, "x = torch.tensor(-3., requires_grad=True)\ny = x**2 if x > 0 else -x**3\ny.backward()")
    assert close(g["x"], -3 * 9.0)


def test_detach_in_the_middle(ag):
    report = run(ag, "%%autograd\nx = torch.tensor(2., requires_grad=True)\nh = x**2\nc = h.detach()\ny = h * c + x\ny.backward()")
    g = {r.wrt: r for r in report.gradients}
    # y = x^2 * c + x with c a constant 4: dy/dx = 2x c + 1 = 17 (not 4x^3 + 1 = 33)
    assert close(g["x"].grad, 17.0)
    assert g["c"].status == "detached" and g["h"].status == "non_leaf" and close(g["h"].grad, 4.0)


def test_vector_function_jacobian(ag):
    report = run(ag, "%%autograd\nv = torch.tensor([1., 2.], requires_grad=True)\nf = torch.stack([v[0] * v[1], v[0] + v[1] ** 2])")
    (jac,) = report.jacobian
    assert jac.values == [[2.0, 1.0], [1.0, 4.0]]  # [[x1, x0], [1, 2 x1]]


# -- big graphs ---------------------------------------------------------------------------------


def test_graph_of_more_than_10000_nodes(ag):
    start = time.perf_counter()
    report = run(ag, "%%autograd\nw = torch.tensor(1.0001, requires_grad=True)\nz = torch.tensor(1.)\nfor _ in range(6000):\n    z = z * w + 0.0\nz.backward()")
    elapsed = time.perf_counter() - start
    assert len(report.graph.nodes) > 10_000
    assert close(report.grad("w"), 6000 * 1.0001**5999, 1e-3)
    block = max(report.graph.repeats, key=lambda b: b.times)
    assert block.times >= 5900
    assert len(str(report).splitlines()) < 300
    assert elapsed < 30


def test_walk_graph_is_iterative_and_ordered():
    a = torch.randn(3, requires_grad=True)
    h = a
    for _ in range(30_000):  # deeper than any recursion limit
        h = h * 1.0
    w = walk_graph([h.sum().grad_fn], {id(a): "a"})
    info = w.info
    assert len(info.nodes) == 30_002 and info.nodes[info.order[-1]].name == "a"
    position = {n: p for p, n in enumerate(info.order)}
    assert all(position[c] < position[i] for c, i in info.edges)  # consumers before inputs
    assert info.repeats and info.repeats[0].times == 30_000


def test_deep_graph_wrappers_are_kept_then_released_once_freed():
    """A walked chain deeper than KEEP_FROM is held by the keeper (a safe teardown) and released,
    outputs first, as soon as nothing else holds it: no leak, no recursion."""
    import weakref

    from tensormagic.engine.autograd import keeper

    keeper.sweep()
    x = torch.randn(2, requires_grad=True)
    ref = weakref.ref(x)
    h = x
    for _ in range(keeper.KEEP_FROM + 10):
        h = h * 1.0
    walk = walk_graph([h.grad_fn], {})
    del walk
    assert keeper.held() >= keeper.KEEP_FROM and keeper.sweep() == 0  # still in use: nothing dropped
    del h, x
    assert ref() is not None  # the kept AccumulateGrad node still holds the leaf
    assert keeper.sweep() >= keeper.KEEP_FROM and keeper.held() == 0
    assert ref() is None


def test_topological_order_of_chains_and_branches():
    # a chain, numbered in any order: followed from its output, depth = its length
    assert topological_order([[], [2], [0]], [1]) == ([1, 2, 0], 3)
    # one input with two consumers (a diamond): the input after both, the taller branch last
    inputs = [[1, 2], [3], [4], [], [3]]  # 0 -> 1 -> 3 and 0 -> 2 -> 4 -> 3
    order, depth = topological_order(inputs, [0])
    assert order == [0, 1, 2, 4, 3] and depth == 4
    # several outputs of one chain each (a forest): every node once, consumers first
    order, depth = topological_order([[1], [], [3], []], [0, 2])
    assert sorted(order) == [0, 1, 2, 3] and order.index(0) < order.index(1) and order.index(2) < order.index(3) and depth == 2
    # a node used by two others of a chain-like graph (fan-out, no fan-in): after both
    order, depth = topological_order([[2], [2], []], [0, 1])
    assert order[-1] == 2 and depth == 2


def test_keeper_keeps_only_what_is_still_in_use():
    """A kept graph whose leaf's AccumulateGrad is still used by a newer graph is cut down to
    that node at the next sweep (a sweep does not scan the freed part again and again)."""
    from tensormagic.engine.autograd import keeper

    keeper.sweep()
    x = torch.randn(2, requires_grad=True)
    h = x * 1.0
    for _ in range(keeper.KEEP_FROM + 10):
        h = h * 1.0
    walk_graph([h.grad_fn], {})
    newer = x * 2.0  # uses x's AccumulateGrad too
    del h
    assert keeper.sweep() >= keeper.KEEP_FROM
    assert keeper.held() == 1 and [len(nodes) for nodes in keeper._kept] == [1]
    del newer
    assert keeper.sweep() == 1 and keeper.held() == 0 and keeper._kept == []  # then that one too


def test_rows_follow_the_graph_from_its_first_leaf(ag):
    """A leaf made in an earlier cell (no line) that the graph reaches first is listed before an
    unnamed leaf of the cell, as the graph orders them (the first leaf's place in the order is
    not the default of a row with none)."""
    run(ag, "w = torch.tensor(2., requires_grad=True)")
    report = run(ag, "%%autograd\ny = w * (torch.tensor(3., requires_grad=True) * 2)\ny.backward()")
    assert [g.wrt for g in report.gradients][:1] == ["w"] and len(report.gradients) == 2


def test_find_repeats_counts_long_runs_exactly():
    """The repeat count (found by doubling and halving slices) equals a count one block at a time,
    on random runs with noise around them."""
    import random

    rng = random.Random(1)
    for _ in range(2000):
        block = [rng.randint(0, 2) for _ in range(rng.randint(1, 4))]
        times = rng.randint(3, 70)
        head = [9] * rng.randint(0, 3)
        sig = head + block * times + [8] * rng.randint(0, 3)
        found = find_repeats(sig, [str(v) for v in sig])
        covering = [b for b in found if b.start <= len(head) < b.start + b.length * b.times]
        assert covering, (sig, found)
        b = covering[0]
        # one block at a time, from the same start and length
        expected = 1
        while sig[b.start + expected * b.length : b.start + (expected + 1) * b.length] == sig[b.start : b.start + b.length] and b.start + (expected + 1) * b.length <= len(sig):
            expected += 1
        assert b.times == expected
    sig = ["m", "a"] * 10_000
    (block,) = find_repeats(sig, sig)
    assert (block.start, block.length, block.times) == (0, 2, 10_000)


def test_find_repeats():
    sig = ["a"] + ["x", "y", "z"] * 5 + ["b"]
    (block,) = find_repeats(sig, sig)
    assert (block.start, block.length, block.times) == (1, 3, 5)
    assert find_repeats(["a", "b", "c"], ["a", "b", "c"]) == []


def test_walk_reads_saved_bytes_and_names():
    x = torch.ones(100)
    w = torch.ones(100, requires_grad=True)
    y = (w * x).sum()
    info = walk_graph([y.grad_fn], {id(x): "x", id(w): "w"}).info
    mul = next(n for n in info.nodes if n.op == "MulBackward0")
    assert "x" in mul.saved and info.saved_bytes >= 400


def test_line_spans_and_instrumented_statements():
    import ast

    spans = LineSpans()
    spans.add(5, 1)
    spans.add(9, 2)
    spans.add(9, 3)  # line 2 made no node: line 3 starts there
    assert spans.line_of(3) is None and spans.line_of(5) == 1 and spans.line_of(8) == 1 and spans.line_of(9) == 3 and spans.line_of(99) == 3
    tree = instrument(ast.parse('"""doc"""\nfrom __future__ import annotations\nw = torch.ones(2, requires_grad=True)\nfor i in range(2):\n    y = w * i\ndef f():\n    return w * 2\n'))
    code = ast.unparse(tree)
    assert code.count(MARKER) == 4  # before w =, for, y = (in the loop body) and def; none inside f
    assert code.startswith('"""doc"""\nfrom __future__ import annotations\n')  # both must stay first
    assert "def f():\n    return w * 2" in code
    spans = LineSpans()
    mark = line_marker(spans)
    ns = {MARKER: mark, "torch": torch}
    exec(compile(tree, "<cell>", "exec"), ns)
    (y_node,) = [ns["y"].grad_fn]
    assert spans.line_of(y_node._sequence_nr()) == 5


# -- source -------------------------------------------------------------------------------------


def test_source_analysis():
    src = "w = p.detach()\nwith torch.no_grad():\n    d = w * 2\nv = q.data\ny = w * x + b\nloss.backward()\ng = torch.autograd.grad(f(x), x)\n"
    info = analyse_source(src)
    assert info.cuts["w"].how == "detach" and info.cuts["d"].how == "no_grad" and info.cuts["v"].how == "data"
    assert info.assigned["y"] == 5 and {"w", "x", "b"} <= info.loaded
    assert info.backward_expression(6) == "loss" and info.backward_expression(7) == "f(x)"
    assert analyse_source("def (:").parse_error


def test_split_names():
    assert split_names("a, b[0, 1],c") == ["a", "b[0, 1]", "c"]


def test_summarise_small_and_big():
    small = summarise(torch.tensor([1.0, -2.0])).plain()
    assert small["value"] == [1.0, -2.0] and small["norm"] == pytest.approx(5**0.5)
    g = torch.full((1000,), 1e-30)
    big = summarise(g).plain()
    assert big["value"] is None and big["norm"] == pytest.approx(1e-30 * 1000**0.5, rel=1e-3)  # no float32 underflow
    g[3] = float("nan")
    assert summarise(g).plain()["nan"] == 1


# -- the session puts back what it changed, and only that ------------------------------------------


def _global_state():
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    return (
        torch.is_grad_enabled(),
        torch.is_anomaly_enabled(),
        torch.autograd.__dict__["_engine_run_backward"],
        torch.autograd.backward,
        torch.autograd.grad,
        torch.Tensor.backward,
        torch.Tensor.register_hook,
        torch.Tensor.retain_grad,
        torch.autograd.Function.__dict__["apply"],
        torch._C._len_torch_function_stack(),
        len(_get_current_dispatch_mode_stack()),
        torch._C._autograd._top_saved_tensors_default_hooks(False),
        sys.gettrace(),
    )


@pytest.mark.parametrize("exc", [KeyboardInterrupt, ValueError])
def test_session_restores_its_own_state_on_any_exception(exc):
    before = _global_state()
    session = AutogradSession({}, "", "<cell>", AutogradOptions(flops=True, check=True))
    with pytest.raises(exc), session.observe():
        assert torch.autograd.__dict__["_engine_run_backward"] is not before[2]
        assert torch._C._len_torch_function_stack() > before[9]
        raise exc
    assert _global_state() == before


def test_session_leaves_the_modes_the_cell_left_open():
    """A mode the cell entered and did not exit stays open, as in a plain cell; the magic's own
    modes (the --check tape, FlopCounter) go from under it."""
    from torch.overrides import TorchFunctionMode

    before = _global_state()
    mode = TorchFunctionMode()
    session = AutogradSession({}, "", "<cell>", AutogradOptions(flops=True, check=True))
    try:
        with session.observe():
            mode.__enter__()  # the cell forgot to exit its own mode
        assert torch._C._len_torch_function_stack() == before[9] + 1
        assert torch._C._get_function_stack_at(before[9]) is mode
        assert _global_state()[:9] == before[:9] and _global_state()[10:] == before[10:]
    finally:
        mode.__exit__(None, None, None)
    assert _global_state() == before


# -- --check ------------------------------------------------------------------------------------


def test_check_passes_on_correct_code(ag):
    report = run(ag, "%%autograd --check\nx = torch.tensor([0.3, 1.2], requires_grad=True)\nlin = nn.Linear(2, 2)\ny = torch.tanh(lin(x)).sum()\ny.backward()")
    assert report.check.ok is True and "passed" in report.check.message
    assert set(report.check.inputs) == {"x", "lin.weight", "lin.bias"}
    assert "── Check" in str(report)


def test_check_catches_a_wrong_custom_backward(ag):
    report = run(
        ag,
        "%%autograd --check\n"
        "class Twice(torch.autograd.Function):\n"
        "    @staticmethod\n    def forward(ctx, x):\n        return x * 2\n"
        "    @staticmethod\n    def backward(ctx, g):\n        return g * 3\n"
        "q = torch.tensor([1., 2.], requires_grad=True)\nout = Twice.apply(q).sum()\nout.backward()",
    )
    assert report.check.ok is False and "FAILED" in report.check.message
    assert report.grad("q") == [3.0, 3.0]  # what the wrong backward says
    assert "Twice.apply again" in report.check.message  # the replay ran the user's Function: labelled


def test_check_skips_big_inputs_without_running(ag):
    report = run(ag, "%%autograd --check\nbig = torch.randn(5000, requires_grad=True)\ns = (big ** 2).sum()")
    assert report.check.ok is None and "5,000 elements" in report.check.message


def test_jacobian_never_starts_what_cannot_fit_in_memory():
    from tensormagic.engine.autograd.extra import ExtraWork
    from tensormagic.engine.autograd.jacobian import jacobian
    from tensormagic.engine.autograd.walk import walk_graph

    session = AutogradSession({}, "", "<cell>")
    extra = ExtraWork(session.recorder, budget_s=1e9)
    out = torch.zeros(1, requires_grad=True).expand(1 << 20) * 1.0  # 1M outputs
    huge_in = torch.zeros(1, requires_grad=True).expand(1 << 24)  # 16M inputs, no memory of their own
    start = time.perf_counter()
    info = jacobian("o", out, [("i", huge_in)], 10**30, extra, walk_graph([out.grad_fn], {}))  # the budget allows it: memory does not
    assert info == []
    (skipped,) = extra.not_computed
    assert "memory is free" in skipped.why and "17,592,186,044,416 entries" in skipped.why
    assert time.perf_counter() - start < 1
