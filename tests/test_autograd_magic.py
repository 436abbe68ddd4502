"""%%autograd through a real InteractiveShell: the seed, every status, outputs, state and memory."""

from __future__ import annotations

import gc
import json
import math
import weakref

import pytest
import torch

from tests.conftest import run, shown_as_one_line_usage_error

SEED = """%%autograd
x = torch.tensor(3.)
w = torch.tensor(4., requires_grad=True)
b = torch.tensor(5., requires_grad=True)
y = w * x + b
y.backward()
"""


@pytest.fixture
def ag(shell):
    run(shell, "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F")
    return shell


def cell(shell, code: str, options: str = ""):
    """Run ``code`` under %%autograd and return the report (the magic's value)."""
    return run(shell, f"%%autograd {options}\n{code}")


def rows(report) -> dict[str, object]:
    return {g.wrt: g for g in report.gradients}


# -- the seed ---------------------------------------------------------------------------------


def test_seed_exact(ag):
    r = run(ag, SEED)
    d = r.to_dict()
    json.dumps(d)
    assert d["outputs"] == [{"name": "y", "shape": [], "dtype": "torch.float32", "value": 17.0, "source": "backward", "line": 4, "call_line": 5, "weighted": False, "seed": None, "calls": 1, "error": None}]
    g = {row["wrt"]: row for row in d["gradients"]}
    assert set(g) == {"w", "b", "x"}
    assert g["w"]["grad"] == 3.0 and g["w"]["status"] == "ok" and g["w"]["of"] == "y"
    assert g["b"]["grad"] == 1.0 and g["b"]["status"] == "ok"
    assert g["x"]["status"] == "no_requires_grad" and g["x"]["grad"] is None
    assert "requires_grad=False" in g["x"]["reason"] and "y = w * x + b" in g["x"]["reason"]
    assert "requires_grad=True" in g["x"]["fix"]
    for key in ("wrt", "of", "status", "grad", "shape", "norm", "reason", "fix"):
        assert key in g["w"]
    assert set(d["graph"]) >= {"nodes", "edges"}
    assert {"forward_s", "backward_s", "saved_bytes"} <= set(d["cost"])
    # .grad exactly as without the magic
    assert ag.user_ns["w"].grad.item() == 3.0 and ag.user_ns["b"].grad.item() == 1.0
    assert ag.user_ns["x"].grad is None


def test_seed_panel_at_a_glance(ag):
    r = run(ag, SEED)
    text = str(r)
    headline = text.splitlines()[1]
    assert "dy/dw = 3" in headline and "dy/db = 1" in headline and "x: no_requires_grad" in headline
    html = r._repr_mimebundle_()["text/html"]
    assert "dy/dw = 3" in html and "no_requires_grad" in html and "requires_grad=True" in html
    for title in ("Gradients", "Graph", "Cost", "Health"):
        assert f"── {title} " in text
    assert "MulBackward0" in text and "AddBackward0 → y" in text and "[line 4: y = w * x + b]" in text


def test_report_is_the_return_value_and_out_stores_it(ag):
    run(ag, SEED.replace("%%autograd", "%%autograd --out rep"))
    assert type(ag.user_ns["rep"]).__name__ == "AutogradReport"
    assert ag.user_ns["rep"].grad("w") == 3.0


def test_widget_renders(ag):
    pytest.importorskip("ipywidgets")
    from tensormagic.render.display import render_widget

    r = run(ag, SEED)
    assert render_widget(r) is not None


# -- statuses ---------------------------------------------------------------------------------


def test_every_status_with_reason_and_fix(ag):
    r = cell(
        ag,
        "w = torch.tensor(2., requires_grad=True)\n"
        "u = torch.tensor(1., requires_grad=True)\n"
        "k = torch.tensor(3)\n"
        "d = w.detach() * 2\n"
        "h = w * w\n"
        "y = h * d + k\n"
        "y.backward()\n",
    )
    g = rows(r)
    assert g["w"].status == "ok" and g["w"].grad == 16.0  # d(w^2 * 2w_const + 3)/dw = 2w * 4
    assert g["h"].status == "non_leaf" and g["h"].grad == 4.0 and "retain_grad()" in g["h"].fix
    assert ".grad stays None" in g["h"].reason
    assert g["u"].status == "unused" and "does not depend on it" in g["u"].reason
    assert g["k"].status == "integer_dtype" and "torch.int64" in g["k"].reason and ".float()" in g["k"].fix
    assert g["d"].status == "detached" and ".detach()" in g["d"].reason and "line 4" in g["d"].reason
    assert ag.user_ns["h"].grad is None  # the magic did not retain it


def test_retain_grad_makes_intermediate_ok(ag):
    r = cell(ag, "w = torch.tensor(2., requires_grad=True)\nh = w * 3\nh.retain_grad()\ny = h ** 2\ny.backward()")
    g = rows(r)
    assert g["h"].status == "ok" and g["h"].grad == 12.0
    assert ag.user_ns["h"].grad.item() == 12.0


@pytest.mark.parametrize(
    ("code", "how"),
    [
        ("with torch.no_grad():\n    d = w * 2\n", "torch.no_grad()"),
        ("d = w.data * 2\n", ".data"),
        ("d = w.detach() * 2\n", ".detach()"),
    ],
)
def test_detached_three_ways(ag, code, how):
    r = cell(ag, "w = torch.tensor(2., requires_grad=True)\n" + code + "y = w * d\ny.backward()")
    g = rows(r)
    assert g["d"].status == "detached" and how in g["d"].reason and "w" in g["d"].reason
    assert g["w"].grad == 4.0  # d is a constant 4


def test_non_finite_gradient_flagged_with_place(ag):
    r = cell(ag, "v = torch.tensor([0., 1.], requires_grad=True)\nout = torch.sqrt(v).sum()\nout.backward()", "--nan")
    g = rows(r)
    assert g["v"].status == "non_finite" and g["v"].inf == 1
    assert "inf" in g["v"].reason and "clamp" in g["v"].fix
    assert r.non_finite["op"] == "SqrtBackward0" and r.non_finite["line"] == 2
    assert any(h.flag == "NaN/inf" for h in r.health)
    assert "SqrtBackward0" in str(r)


def test_non_finite_forward_value_found_without_option(ag):
    r = cell(ag, "a = torch.tensor([1., -1.], requires_grad=True)\nl = torch.sqrt(a)\ns = l.sum()\ns.backward()")
    assert rows(r)["a"].status == "non_finite"
    assert r.non_finite["where"] == "forward" and r.non_finite["name"] == "l" and r.non_finite["line"] == 2


def test_non_finite_located_when_the_magic_computes(ag):
    r = cell(ag, "v = torch.tensor([0., 4.], requires_grad=True)\nout = torch.sqrt(v).sum()")
    assert r.outputs[0].source == "graph root"
    assert r.non_finite["where"] == "backward" and r.non_finite["op"] == "SqrtBackward0"


# -- outputs ----------------------------------------------------------------------------------


def test_last_expression_is_the_output_and_is_displayed(ag, capsys):
    ag.run_cell("%%autograd\nw = torch.tensor([1., 2.], requires_grad=True)\n(w ** 3).sum()", store_history=True)
    out = capsys.readouterr().out
    assert "tensor(9., grad_fn=<SumBackward0>)" in out  # the cell's own output
    assert "autograd · (w ** 3).sum()" in out  # then the report
    r = ag.user_ns["_"]
    assert r.outputs[0].source == "last expression"
    assert rows(r)["w"].grad == [3.0, 12.0]
    assert ag.user_ns["w"].grad is None  # no backward in the cell: no .grad touched


def test_graph_roots_when_nothing_else(ag):
    r = cell(ag, "w = torch.tensor(2., requires_grad=True)\nh = w * 3\nz = h + 1\nq = w.exp()")
    assert [o.name for o in r.outputs] == ["z", "q"]
    assert all(o.source == "graph root" for o in r.outputs)
    assert r.grad("w", of="z") == 3.0
    assert math.isclose(r.grad("w", of="q"), math.exp(2.0), rel_tol=1e-6)
    assert ag.user_ns["w"].grad is None


def test_of_overrides_and_wrt_filters(ag):
    r = cell(ag, "w = torch.tensor(2., requires_grad=True)\nb = torch.tensor(1., requires_grad=True)\nh = w * b\nloss = h ** 2\nloss.backward()", "--of h --wrt w")
    assert [o.name for o in r.outputs] == ["h"] and r.outputs[0].source == "--of"
    assert [g.wrt for g in r.gradients] == ["w"] and r.gradients[0].grad == 1.0  # dh/dw = b
    assert ag.user_ns["w"].grad.item() == 4.0  # the cell's own backward still ran: 2*h*b


def test_of_after_the_cell(ag):
    r = cell(ag, "w = torch.tensor(2., requires_grad=True)\nh = w * 5", "--of h")
    assert r.grad("w") == 5.0


def test_non_scalar_output_jacobian_within_budget(ag):
    r = cell(ag, "a = torch.tensor([1., 2., 3.], requires_grad=True)\nz = a ** 2")
    g = rows(r)
    assert g["a"].grad == [2.0, 4.0, 6.0] and "vector-Jacobian product with ones" in g["a"].label
    (jac,) = r.jacobian
    assert jac.shape == [3, 3] and jac.values == [[2.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 6.0]]
    assert "jacobian" in r.to_dict()


def test_non_scalar_output_over_budget_says_size_at_once(ag):
    r = cell(ag, "a = torch.randn(2000, requires_grad=True)\nz = a * 2", "--jacobian-budget 1000")
    assert r.jacobian == []
    (skipped,) = r.not_computed
    assert skipped.what == "the Jacobian of z" and "4,000,000 entries" in skipped.why and "budget of 1,000" in skipped.why
    assert skipped.option == "jacobian_budget" and "--jacobian-budget" in str(r)
    assert rows(r)["a"].grad["max"] == 2.0
    assert "jacobian" not in r.to_dict()


def test_non_scalar_backward_with_gradient_is_a_vjp(ag):
    r = cell(ag, "a = torch.tensor([1., 2.], requires_grad=True)\nz = a ** 2\nz.backward(torch.tensor([1., 10.]))", "--no-jacobian")
    g = rows(r)
    assert g["a"].grad == [2.0, 40.0] and "gradient passed to backward" in g["a"].label
    assert r.jacobian == []
    assert ag.user_ns["a"].grad.tolist() == [2.0, 40.0]


def test_cell_calls_autograd_grad_itself(ag):
    r = cell(ag, "p = torch.tensor([1., 2.], requires_grad=True)\nq = torch.tensor(3., requires_grad=True)\nf = (p ** 3).sum() * q\ng, = torch.autograd.grad(f, p)")
    assert r.outputs[0].name == "f" and r.outputs[0].source == "torch.autograd.grad"
    assert rows(r)["p"].grad == [9.0, 36.0]
    assert rows(r)["q"].grad == 9.0  # not asked by the cell: computed by the magic, still without .grad
    assert ag.user_ns["g"].tolist() == [9.0, 36.0]
    assert ag.user_ns["p"].grad is None and ag.user_ns["q"].grad is None
    assert r.cost.grad_calls == 1 and r.cost.backward_calls == 0


def test_cell_with_no_tensors_is_a_clear_message(ag):
    r = cell(ag, "s = 'hello'\nn = 3 + 4")
    assert r.message and "no tensor" in r.message
    assert r.gradients == [] and r.outputs == []
    assert "no tensor" in str(r).splitlines()[1]


def test_cell_with_tensors_but_no_grad_says_how(ag):
    r = cell(ag, "q = torch.ones(3) * 2")
    assert "requires_grad=True" in r.message


# -- the user's state -------------------------------------------------------------------------


def test_grad_accumulates_exactly_and_change_is_shown(ag):
    run(ag, "w = torch.tensor(4., requires_grad=True)\n(w * 10).backward()")
    r = cell(ag, "y = w * 3\ny.backward()")
    assert ag.user_ns["w"].grad.item() == 13.0
    assert rows(r)["w"].change == "w.grad += 3.0, now 13.0"
    assert "w.grad += 3.0, now 13.0" in str(r)


def test_no_backward_touches_no_grad(ag):
    run(ag, "w = torch.tensor(4., requires_grad=True)\n(w * 10).backward()")
    cell(ag, "y = w * 3")
    assert ag.user_ns["w"].grad.item() == 10.0
    assert ag.user_ns["y"].grad_fn is not None  # the graph is still usable by the user
    run(ag, "y.backward()")
    assert ag.user_ns["w"].grad.item() == 13.0


def test_training_loop_zero_grad(ag):
    r = cell(
        ag,
        "lin = nn.Linear(3, 1)\nopt = torch.optim.SGD(lin.parameters(), lr=0.1)\n"
        "for _ in range(5):\n    opt.zero_grad()\n    loss = lin(torch.ones(2, 3)).pow(2).mean()\n    loss.backward()\n    opt.step()\n",
    )
    assert r.cost.backward_calls == 5 and len(r.outputs) == 1 and r.outputs[0].name == "loss"
    assert any("5 times" in n for n in r.notes)
    assert rows(r)["lin.weight"].status == "ok"


def test_graph_freed_and_nothing_kept_alive(ag):
    cell(ag, "big = torch.randn(1000, requires_grad=True)\nmid = big.exp()\ny = mid.sum()\ny.backward()", "--out rep")
    with pytest.raises(RuntimeError):  # backward freed what mid's node saved, as without the magic
        ag.user_ns["mid"].grad_fn._saved_result
    ref = weakref.ref(ag.user_ns["big"])
    ref_mid = weakref.ref(ag.user_ns["mid"])
    for name in ("big", "mid", "y"):
        del ag.user_ns[name]
    gc.collect()
    assert ref() is None and ref_mid() is None
    assert type(ag.user_ns["rep"]).__name__ == "AutogradReport"


def test_hooks_removed_after_the_cell(ag):
    cell(ag, "w = torch.tensor(2., requires_grad=True)\nh = w * 3\ny = h * h\ny.backward(retain_graph=True)")
    h = ag.user_ns["h"]
    assert not h._backward_hooks
    run(ag, "y.backward()")  # a second backward outside the magic runs no hook of ours
    assert ag.user_ns["w"].grad.item() == 2 * 36.0


def _state():
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    return (
        torch.autograd.backward,
        torch.autograd.grad,
        torch.autograd.__dict__["_engine_run_backward"],
        torch.Tensor.backward,
        torch.Tensor.register_hook,
        torch.Tensor.retain_grad,
        torch.autograd.Function.__dict__["apply"],
        torch.is_grad_enabled(),
        torch.is_anomaly_enabled(),
        torch._C._len_torch_function_stack(),
        len(_get_current_dispatch_mode_stack()),
        torch._C._autograd._top_saved_tensors_default_hooks(False),
    )


def test_a_cell_that_raises_propagates_and_restores_state(ag):
    before = _state()
    res = ag.run_cell("%%autograd --flops\nw = torch.tensor(2., requires_grad=True)\ny = w * 2\n1 / 0", store_history=False)
    assert isinstance(res.error_in_exec, ZeroDivisionError)
    assert _state() == before
    assert "y" in ag.user_ns  # what ran before the error stays, as in a normal cell


def test_error_inside_backward_and_keyboard_interrupt_restore_state(ag):
    before = _state()
    res = ag.run_cell(
        "%%autograd\nw = torch.tensor(2., requires_grad=True)\n"
        "def boom(g):\n    raise KeyboardInterrupt\n"
        "h = w * 3\nh.register_hook(boom)\n(h * 2).backward()",
        store_history=False,
    )
    assert isinstance(res.error_in_exec, KeyboardInterrupt)
    assert _state() == before
    assert len(ag.user_ns["h"]._backward_hooks) == 1  # only the cell's own hook is left
    res = ag.run_cell("%%autograd\nz = torch.tensor(1.)\nz.backward()", store_history=False)
    assert isinstance(res.error_in_exec, RuntimeError) and "does not require grad" in str(res.error_in_exec)
    assert _state() == before


def test_the_cells_own_grad_and_anomaly_settings_persist_as_in_a_plain_cell(ag):
    """The magic puts back only what it changed: a cell that switches grad mode or anomaly
    detection off/on leaves them so, with the magic as without it."""
    code = "w = torch.tensor(2., requires_grad=True)\ny = w * 2\ntorch.set_grad_enabled(False)\ntorch.autograd.set_detect_anomaly(True)"
    try:
        run(ag, code)
        plain = (torch.is_grad_enabled(), torch.is_anomaly_enabled())
        torch.set_grad_enabled(True)
        torch.autograd.set_detect_anomaly(False)
        r = run(ag, "%%autograd\n" + code)
        magic = (torch.is_grad_enabled(), torch.is_anomaly_enabled())
        assert plain == magic == (False, True)
        assert r.grad("w") == 2.0
    finally:
        torch.set_grad_enabled(True)
        torch.autograd.set_detect_anomaly(False)


# -- bigger problems --------------------------------------------------------------------------


def test_100_layer_mlp_health_and_collapsed_graph(ag):
    r = cell(
        ag,
        "torch.manual_seed(0)\n"
        "model = nn.Sequential(*[m for _ in range(100) for m in (nn.Linear(8, 8), nn.Sigmoid())])\n"
        "loss = model(torch.randn(4, 8)).pow(2).mean()\n"
        "loss.backward()",
    )
    assert len(r.health) == 200 and r.health[0].name == "model.0.weight"
    assert r.health[0].flag == "vanishing" and r.health[-1].flag is None
    assert all(g.status == "ok" for g in r.gradients)
    big = max(r.graph.repeats, key=lambda b: b.times)
    assert big.times >= 98
    text = str(r)
    assert "more times" in text and len(text.splitlines()) < 400
    assert text.splitlines()[1].endswith("200 ok · vanishing gradients: " + f"{sum(h.flag == 'vanishing' for h in r.health)} parameters")
    assert [g.wrt for g in r.gradients[:3]] == ["model.0.weight", "model.0.bias", "model.2.weight"]  # layers in order
    assert "vanishing" in text
    assert ag.user_ns["model"][0].weight.grad is not None


def test_flops_counted(ag):
    r = cell(ag, "a = torch.randn(16, 32, requires_grad=True)\nb = torch.randn(32, 8)\nloss = (a @ b).sum()\nloss.backward()", "--flops")
    assert r.cost.flops_forward == 2 * 16 * 32 * 8
    assert r.cost.flops_backward == 2 * 16 * 32 * 8  # only da = g @ b.T
    assert "FLOPs forward" in str(r)
    import torch.nn.modules.module as nn_module

    assert not nn_module._global_forward_pre_hooks and not nn_module._global_forward_hooks  # its module tracker's hooks are gone


def test_lines_recorded_for_ops_inside_functions(ag):
    r = cell(ag, "w = torch.tensor(2., requires_grad=True)\ndef f(t):\n    return t.sin()\ny = f(w) * 2\ny.backward()")
    by_op = {n.op: n for n in r.graph.nodes}
    assert by_op["SinBackward0"].line == 3 and by_op["MulBackward0"].line == 4


def test_no_lines_option(ag):
    r = cell(ag, "w = torch.tensor(2., requires_grad=True)\nh = w.sin()\ny = h * 2\ny.backward()", "--no-lines")
    by_op = {n.op: n for n in r.graph.nodes}
    assert by_op["SinBackward0"].line == 2  # from the assignment of h
    assert torch._C._len_torch_function_stack() == 0


# -- usage errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "code", "message"),
    [
        ("", "   ", "needs code below it"),
        ("--jacobian-budget 0", "x = 1", "--jacobian-budget must be a positive"),
        ("--of a+", "x = 1", "is not a variable name or expression"),
        ("--out 1x", "x = 1", "--out needs a variable name"),
        ("--wat", "x = 1", "unknown option --wat: did you mean --wrt?"),
        ("--wat-wat-wat", "x = 1", "unrecognized arguments"),
        ("--of nope", "w = torch.tensor(1., requires_grad=True)", "'nope' is not defined after the cell ran"),
        ("--of w", "w = torch.tensor(1., requires_grad=True)", "it is a leaf"),
        ("", "ran = 1\nx = (1,\ny = 2", "the cell has a syntax error, so it did not run: line 2"),
    ],
)
def test_usage_errors_are_one_line(ag, capsys, options, code, message):
    err = shown_as_one_line_usage_error(ag, capsys, f"%%autograd {options}\n{code}")
    assert message in str(err)


def test_syntax_error_runs_nothing(ag):
    ag.run_cell("%%autograd\nran = 1\nx = (1,", store_history=False)
    assert "ran" not in ag.user_ns


def test_names_bound_where_the_source_does_not_show_it(ag):
    r = cell(ag, "%time z = torch.ones(2, requires_grad=True) * 2")
    assert [o.name for o in r.outputs] == ["z"] and r.outputs[0].source == "graph root"
    (row,) = r.gradients
    assert row.wrt == "unnamed leaf" and row.grad == [2.0, 2.0]


def test_help_documents_every_option(ag):
    doc = ag.find_cell_magic("autograd").__doc__
    for option in ("--of", "--wrt", "--check", "--flops", "--jacobian-budget", "--no-jacobian", "--no-lines", "--nan", "--out"):
        assert option in doc


def test_long_training_loop_keeps_one_graph(ag):
    r = cell(
        ag,
        "lin = nn.Linear(4, 1)\nopt = torch.optim.SGD(lin.parameters(), lr=0.01)\n"
        "for _ in range(300):\n    opt.zero_grad()\n    loss = lin(torch.ones(3, 4)).pow(2).mean()\n    loss.backward()\n    opt.step()\n",
    )
    assert r.cost.backward_calls == 300 and len(r.outputs) == 1
    assert 0 < len(r.graph.nodes) < 20  # the last call's graph, not 300 of them


def test_seed_snippet_verbatim_with_comments_and_prints(shell, capsys):
    """The seed's first snippet, comments and prints included, works exactly under the magic."""
    run(shell, "import torch")
    r = shell.run_cell_magic(
        "autograd",
        "",
        "x = torch.tensor(3.) #(1)\n"
        "w = torch.tensor(4., requires_grad=True)\n"
        "b = torch.tensor(5., requires_grad=True)\n"
        "y = w * x + b\n"
        "# Compute derivatives\n"
        "y.backward()\n"
        "# Display gradients\n"
        "print('dy/dx: ', x.grad)\n"
        "print('dy/dw: ', w.grad)\n"
        "print('dy/db: ', b.grad)\n",
    )
    out = capsys.readouterr().out
    assert "dy/dx:  None\ndy/dw:  tensor(3.)\ndy/db:  tensor(1.)" in out
    rows = {g["wrt"]: g for g in r.to_dict()["gradients"]}
    assert rows["w"]["grad"] == 3.0 and rows["b"]["grad"] == 1.0
    assert rows["x"]["status"] == "no_requires_grad"
    assert rows["x"]["fix"].endswith("x = torch.tensor(3., requires_grad=True)")  # the comment is not mangled


def test_the_panel_comes_from_the_render_registry_and_mimebundle_honours_include_exclude(ag):
    from tensormagic.engine.autograd import AutogradReport
    from tensormagic.render.registry import panel_of

    r = run(ag, SEED)
    assert not hasattr(AutogradReport, "PANEL")  # the engine names no renderer
    assert panel_of(r).title == "autograd · y"
    assert set(r._repr_mimebundle_(include=["text/plain"])) == {"text/plain"}
    assert set(r._repr_mimebundle_(exclude=["text/html"])) == {"text/plain"}
    assert set(r._repr_mimebundle_()) == {"text/plain", "text/html"}
