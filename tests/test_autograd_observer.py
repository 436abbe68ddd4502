"""%%autograd as an observer: every cell behaves exactly as without the magic (issue #10).

Each test runs a cell plainly and under the magic from fresh namespaces (tests/autograd_both.py)
and compares results, ``.grad``, hook counts, printed output, warnings, exceptions and global
settings.  The cells are in the style of PyTorch's tutorials and notes: hooks, checkpointing,
saved-tensor hooks, custom Functions, ``torch.func``, complex numbers, double backward,
training loops.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.autograd_both import assert_same, run_both
from tests.conftest import run

COUNTERS = "calls = []\n"


def same(shell, capsys, setup, cell, options=""):
    plain, magic, report = run_both(shell, capsys, setup, cell, options)
    assert_same(plain, magic, report)
    return plain, report


# -- principle 1: the same results, output, warnings, exceptions, settings --------------------------


def test_seed_snippet_same_with_and_without(shell, capsys):
    cell = "x = torch.tensor(3.)\nw = torch.tensor(4., requires_grad=True)\nb = torch.tensor(5., requires_grad=True)\ny = w * x + b\ny.backward()\nprint('dy/dx: ', x.grad)\nprint('dy/dw: ', w.grad)\nprint('dy/db: ', b.grad)"
    plain, report = same(shell, capsys, "", cell)
    assert "dy/dw:  tensor(3.)" in plain.out
    assert report.grad("w") == 3.0


def test_printed_output_warnings_and_last_value_unchanged(shell, capsys):
    cell = "import warnings\nw = torch.ones(3, requires_grad=True)\nprint('before', w.sum().item())\nwarnings.warn('mind the gap')\ny = (w * 2).sum()\ny.backward()\ny"
    plain, report = same(shell, capsys, "", cell)
    assert ("UserWarning", "mind the gap") in plain.warnings and "before 3.0" in plain.out and "tensor(6." in plain.out


@pytest.mark.parametrize(
    "cell",
    [
        "w = torch.ones(2, requires_grad=True)\ny = (w * 2).sum()\ny.backward()\ny.backward()",  # freed graph
        "w = torch.ones(2, requires_grad=True)\ny = w * 2\ny.backward()",  # non-scalar without gradient
        "z = torch.tensor(1.)\nz.backward()",  # nothing requires grad
        "w = torch.ones(2, requires_grad=True)\ny = (w * 2).sum()\nraise KeyError('mine')",
        "w = torch.ones(2, requires_grad=True)\nh = w.exp()\nh.add_(1)\nh.sum().backward()",  # modified in place
    ],
)
def test_same_exception_class_and_message(shell, capsys, cell):
    plain, _ = same(shell, capsys, "", cell)
    assert plain.error is not None


def test_global_settings_the_cell_changes_persist(shell, capsys):
    cell = "w = torch.ones(2, requires_grad=True)\n(w * 2).sum().backward()\ntorch.set_grad_enabled(False)\ntorch.autograd.set_detect_anomaly(True)\ntorch.set_default_dtype(torch.float64)"
    plain, _ = same(shell, capsys, "", cell)
    assert plain.settings[0] is False and plain.settings[1] is True and plain.settings[3] == __import__("torch").float64


def test_default_device_meta_persists(shell, capsys):
    plain, _ = same(shell, capsys, "", "w = torch.ones(2, requires_grad=True)\n(w * 2).sum().backward()\ntorch.set_default_device('meta')\nm = torch.ones(2)")
    assert plain.settings[4] == "meta"


def test_a_mode_and_saved_tensor_hooks_the_cell_leaves_open_stay_open(shell, capsys):
    cell = (
        "from torch.overrides import TorchFunctionMode\n"
        "class Count(TorchFunctionMode):\n"
        "    n = 0\n"
        "    def __torch_function__(self, func, types, args=(), kwargs=None):\n"
        "        Count.n += 1\n"
        "        return func(*args, **(kwargs or {}))\n"
        "mode = Count()\nmode.__enter__()\n"
        "hooks = torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t)\nhooks.__enter__()\n"
        "w = torch.ones(2, requires_grad=True)\n(w.exp()).sum().backward()\nseen = Count.n\n"
    )
    plain, _ = same(shell, capsys, "", cell)
    assert plain.settings[5] == 1 and plain.settings[7] is True  # still open after the cell
    assert plain.values["seen"] > 0  # the cell's own mode saw the same number of calls either way


# -- principle 2: no user code runs more often ----------------------------------------------------


def test_tensor_hooks_fire_as_often(shell, capsys):
    cell = COUNTERS + "w = torch.ones(3, requires_grad=True)\nh = w * 2\nh.register_hook(lambda g: calls.append('h'))\nw.register_hook(lambda g: calls.append('w'))\nloss = h.pow(2).sum()\nloss.backward()"
    plain, report = same(shell, capsys, "", cell)
    assert plain.values["calls"] == ("list", ["h", "w"])


def test_node_pre_and_post_hooks_fire_as_often(shell, capsys):
    cell = COUNTERS + "w = torch.ones(3, requires_grad=True)\ny = (w * 3).sum()\ny.grad_fn.register_prehook(lambda g: calls.append('pre'))\ny.grad_fn.register_hook(lambda gi, go: calls.append('post'))\ny.backward()"
    plain, _ = same(shell, capsys, "", cell)
    assert plain.values["calls"] == ("list", ["pre", "post"])


def test_module_hooks_fire_as_often(shell, capsys):
    setup = "net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))\n"
    cell = COUNTERS + (
        "net[0].register_full_backward_hook(lambda m, gi, go: calls.append('bwd'))\n"
        "net[2].register_forward_hook(lambda m, i, o: calls.append('fwd'))\n"
        "net[0].register_full_backward_pre_hook(lambda m, go: calls.append('pre'))\n"
        "loss = net(torch.ones(2, 3)).sum()\nloss.backward()"
    )
    plain, report = same(shell, capsys, setup, cell)
    assert plain.values["calls"] == ("list", ["fwd", "pre", "bwd"])
    assert report.row("net.0.weight").status == "ok"


def test_module_hooks_and_no_backward_in_the_cell_run_no_extra_pass(shell, capsys):
    """The magic never makes a pass of its own over a graph with user hooks: it says so instead."""
    setup = "net = nn.Linear(3, 1)\n"
    cell = COUNTERS + "net.register_full_backward_hook(lambda m, gi, go: calls.append('bwd'))\nout = net(torch.ones(2, 3)).sum()"
    plain, report = same(shell, capsys, setup, cell)
    assert plain.values["calls"] == ("list", [])
    assert report.not_computed and "module backward hooks" in report.not_computed[0].why
    assert report.row("net.weight").status == "not_computed"


def test_retain_grad_without_backward_keeps_grad_none(shell, capsys):
    cell = "w = torch.ones(3, requires_grad=True)\nh = w * 2\nh.retain_grad()\nout = h.sum()"
    plain, report = same(shell, capsys, "", cell)
    assert plain.values["h"][3] is None  # no .grad: the magic did not run a pass that would set it
    assert "retain_grad" in report.not_computed[0].why


def test_saved_tensor_hooks_pack_and_unpack_as_often(shell, capsys):
    cell = COUNTERS + (
        "def pack(t):\n    calls.append('pack')\n    return t\n"
        "def unpack(t):\n    calls.append('unpack')\n    return t\n"
        "w = torch.ones(3, requires_grad=True)\n"
        "with torch.autograd.graph.saved_tensors_hooks(pack, unpack):\n    y = (w.exp() * w).sum()\n"
        "y.backward()"
    )
    plain, report = same(shell, capsys, "", cell)
    assert plain.values["calls"][1].count("unpack") >= 1
    assert report.cost.saved_under_hooks >= 1


def test_one_shot_unpack_hook_offloading_to_files_keeps_working(shell, capsys, tmp_path):
    cell = COUNTERS + textwrap.dedent(
        f"""
        import os, uuid
        def pack(t):
            path = os.path.join({str(tmp_path)!r}, uuid.uuid4().hex)
            torch.save(t, path)
            return path
        def unpack(path):
            t = torch.load(path)
            os.remove(path)  # one shot: a second unpack fails
            calls.append(1)
            return t
        w = torch.randn(5, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            y = (w.sin() * w.cos()).sum()
        y.backward()
        left = len(os.listdir({str(tmp_path)!r}))
        """
    )
    plain, report = same(shell, capsys, "", cell)
    assert plain.error is None and plain.values["left"] == 0
    assert report.row("w").status == "ok"


@pytest.mark.parametrize("reentrant", [False, True])
def test_checkpointing_recomputes_as_often(shell, capsys, reentrant):
    cell = COUNTERS + (
        "from torch.utils.checkpoint import checkpoint\n"
        "lin = nn.Linear(4, 4)\n"
        "def block(x):\n    calls.append('forward')\n    return torch.tanh(lin(x))\n"
        "x = torch.randn(2, 4, requires_grad=True)\n"
        f"y = checkpoint(block, x, use_reentrant={reentrant}).sum()\ny.backward()"
    )
    plain, report = same(shell, capsys, "", cell)
    assert plain.values["calls"] == ("list", ["forward", "forward"])


def test_custom_function_runs_as_often(shell, capsys):
    cell = COUNTERS + (
        "class Square(torch.autograd.Function):\n"
        "    @staticmethod\n    def forward(ctx, x):\n        calls.append('f')\n        ctx.save_for_backward(x)\n        return x * x\n"
        "    @staticmethod\n    def backward(ctx, g):\n        calls.append('b')\n        (x,) = ctx.saved_tensors\n        return 2 * x * g\n"
        "x = torch.tensor([1., 2.], requires_grad=True)\ny = Square.apply(x).sum()\ny.backward()"
    )
    plain, report = same(shell, capsys, "", cell)
    assert plain.values["calls"] == ("list", ["f", "b"])
    assert report.grad("x") == [2.0, 4.0]


def test_custom_function_without_backward_in_the_cell_is_not_run_again(shell, capsys):
    cell = COUNTERS + (
        "class Square(torch.autograd.Function):\n"
        "    @staticmethod\n    def forward(ctx, x):\n        ctx.save_for_backward(x)\n        return x * x\n"
        "    @staticmethod\n    def backward(ctx, g):\n        calls.append('b')\n        (x,) = ctx.saved_tensors\n        return 2 * x * g\n"
        "x = torch.tensor([1., 2.], requires_grad=True)\ny = Square.apply(x).sum()"
    )
    plain, report = same(shell, capsys, "", cell)
    assert plain.values["calls"] == ("list", [])
    assert "SquareBackward" in report.not_computed[0].why


# -- torch.func, complex, double backward, other tensor kinds ------------------------------------------


@pytest.mark.parametrize(
    "cell",
    [
        "from torch.func import grad\nf = lambda x: (x.sin() ** 2).sum()\ng = grad(f)(torch.randn(3))",
        "from torch.func import vmap, grad\nf = lambda x: (x ** 3).sum()\ng = vmap(grad(f))(torch.randn(4, 3))",
        "from torch.func import jacrev\nJ = jacrev(torch.sin)(torch.randn(3))",
        "from torch.func import vjp\nout, fn = vjp(torch.exp, torch.randn(3))\n(g,) = fn(torch.ones(3))",
        "J = torch.autograd.functional.jacobian(lambda x: x ** 2, torch.randn(3))",
        "J = torch.autograd.functional.jacobian(lambda x: x ** 2, torch.randn(3), vectorize=True)",
        # per-sample gradients, as in the torch.func tutorial
        "from torch.func import functional_call, vmap, grad\nmodel = nn.Linear(3, 1)\nparams = {k: v.detach() for k, v in model.named_parameters()}\n"
        "def loss(p, x, y):\n    return F.mse_loss(functional_call(model, p, (x.unsqueeze(0),)), y.unsqueeze(0))\n"
        "per = vmap(grad(loss), in_dims=(None, 0, 0))(params, torch.randn(5, 3), torch.randn(5, 1))",
    ],
)
def test_torch_func_and_functional_cells(shell, capsys, cell):
    same(shell, capsys, "", cell)


def test_complex_autograd_no_cast_warning_and_exact_sums(shell, capsys):
    cell = "z = torch.tensor([1 + 2j, 3 - 1j], requires_grad=True)\nfor _ in range(2):\n    (z.abs() ** 2).sum().backward()"
    plain, report = same(shell, capsys, "", cell)
    assert "Casting complex" not in plain.err
    row = report.row("z")
    assert row.status == "ok" and isinstance(row.grad[0], complex)
    assert "(4+8j)" in row.change.replace(" ", "")  # the sum over both calls, imaginary part kept


def test_double_backward(shell, capsys):
    cell = "x = torch.tensor(2., requires_grad=True)\ny = x ** 3\n(g,) = torch.autograd.grad(y, x, create_graph=True)\ng.backward()"
    plain, report = same(shell, capsys, "", cell)
    assert plain.values["x"][3].item() == 12.0  # d2y/dx2 = 6x


@pytest.mark.parametrize(
    "leaf",
    [
        "torch.ones(3, device='meta', requires_grad=True)",
        "torch.nested.nested_tensor([torch.ones(2), torch.ones(3)], requires_grad=True)",
        "torch.nested.nested_tensor([torch.ones(2), torch.ones(3)], layout=torch.jagged, requires_grad=True)",
        "TwoTensor(torch.ones(3), torch.ones(3)).requires_grad_()",
    ],
)
def test_meta_nested_and_subclass_leaves_never_break_the_cell(shell, capsys, leaf):
    setup = "from torch.testing._internal.two_tensor import TwoTensor\n_warm = torch.nested.nested_tensor([torch.ones(1)])  # its warn-once warning, before both runs\n"
    cell = f"w = {leaf}\ny = (w * 2).sum() if not w.is_nested else (w * 2).values().sum()\ny.backward()"
    plain, report = same(shell, capsys, setup, cell)


def test_fake_tensor_leaf_never_breaks_the_cell(shell, capsys):
    setup = "from torch._subclasses.fake_tensor import FakeTensorMode\nmode = FakeTensorMode()\n"
    cell = "with mode:\n    w = torch.ones(3, requires_grad=True)\n    y = (w * 2).sum()\n    y.backward()\n    shape = list(w.grad.shape)"
    same(shell, capsys, setup, cell)


def test_leaf_whose_requires_grad_was_switched_off_later(shell, capsys):
    cell = "w = torch.ones(3, requires_grad=True)\ny = (w * 2).sum()\nw.requires_grad_(False)"
    same(shell, capsys, "", cell)


def test_grad_imported_in_an_earlier_cell_is_observed(shell, capsys):
    setup = "from torch.autograd import grad\n"
    cell = "w = torch.tensor(3., requires_grad=True)\ny = w ** 2\n(g,) = grad(y, w)"
    plain, report = same(shell, capsys, setup, cell)
    assert report.outputs[0].source == "torch.autograd.grad" and report.grad("w") == 6.0


# -- principle 3: --check changes no user data ------------------------------------------------------


def test_check_does_not_replay_in_place_ops_on_user_data(shell, capsys):
    setup = "acc = torch.ones(2)\nbn = nn.BatchNorm1d(2)\n"
    cell = "x = torch.tensor([[0.5, 1.0], [1.5, -2.0]], requires_grad=True)\nacc.mul_(2)\ny = (bn(x) * acc).sum()\ny.backward()"
    plain, report = same(shell, capsys, setup, cell, "--check")
    assert report.check is not None and report.check.ok is True, report.check
    assert plain.values["bn"][1]["num_batches_tracked"][1].item() == 1


def test_check_memory_is_bounded_in_a_loop(shell, capsys):
    """A 40-step loop over 1 MiB tensors under --check keeps no more than the tape's bound."""
    cell = "w = torch.randn(4, requires_grad=True)\nfor _ in range(40):\n    big = torch.randn(256, 1024) * w[0]\n    big.sum().backward()"
    plain, report = same(shell, capsys, "", cell, "--check")
    assert report.check.ok is None and "MiB" in report.check.message


# -- principle 4: the magic never breaks a cell, never kills the kernel ----------------------------------


def test_a_100000_op_chain_then_a_plain_cell_that_frees_it_does_not_crash(tmp_path):
    script = tmp_path / "chain.py"
    script.write_text(
        textwrap.dedent(
            """
            from IPython.core.interactiveshell import InteractiveShell
            ip = InteractiveShell.instance()
            ip.run_line_magic("load_ext", "tensormagic")
            ip.run_cell("import torch")
            r = ip.run_cell("%%autograd --out rep\\nx = torch.randn(2, requires_grad=True)\\ny = x\\nfor _ in range(100_000):\\n    y = y * 1.0001\\nz = y.sum()")
            assert r.error_in_exec is None, r.error_in_exec
            assert len(ip.user_ns["rep"].graph.nodes) > 100_000
            r = ip.run_cell("del y, z")  # a plain cell frees the graph
            assert r.error_in_exec is None
            from tensormagic.engine.autograd import keeper
            assert keeper.held() == 0, keeper.held()  # released after that cell, outputs first
            print("survived")
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "survived" in done.stdout, (done.returncode, done.stderr[-2000:])


# -- principle 5: bounded time ---------------------------------------------------------------------------


def test_a_jacobian_with_one_input_and_40000_outputs_takes_the_cheap_mode(shell):
    import time

    run(shell, "import torch")
    start = time.perf_counter()
    r = run(shell, "%%autograd\nw = torch.tensor(2., requires_grad=True)\nz = torch.linspace(0, 1, 40_000) * w")
    assert time.perf_counter() - start < 5
    (jac,) = r.jacobian
    assert jac.mode == "forward" and jac.shape == [40_000] and jac.summary["max"] == pytest.approx(1.0)


def test_extra_work_over_the_time_budget_is_estimated_not_made(shell):
    run(shell, "import torch")
    r = run(shell, "%%autograd --extra-time 0\nw = torch.tensor(2., requires_grad=True)\nz = torch.linspace(0, 1, 500) * w")
    assert r.jacobian == [] and r.gradients[0].status == "not_computed"
    assert any(nc.option == "extra_seconds" and nc.estimate_s is not None for nc in r.not_computed)
    assert "--extra-time" in str(r)


# -- truth on real code ------------------------------------------------------------------------------


def test_aliases_are_one_row_naming_every_name(shell):
    run(shell, "import torch\nimport torch.nn as nn")
    r = run(shell, "%%autograd\nw = torch.tensor(2., requires_grad=True)\nw2 = w\ny = w2 * 3\ny.backward()")
    (row,) = [g for g in r.gradients if g.status == "ok"]
    assert {row.wrt, *row.aliases} == {"w", "w2"}
    assert not [g for g in r.gradients if g.status == "unused"]
    r = run(shell, "%%autograd\nmodel = nn.Sequential(nn.Linear(2, 2))\nlinear_layer = model[0]\nfor p in model.parameters():\n    pass\nloss = model(torch.ones(1, 2)).sum()\nloss.backward()")
    assert not [g for g in r.gradients if g.status == "unused"], [(g.wrt, g.status) for g in r.gradients]
    assert len([g for g in r.gradients if g.status == "ok"]) == 2
    bias = r.row("model.0.bias")
    assert "p" in bias.aliases and "linear_layer.bias" in [bias.wrt, *bias.aliases]


def test_added_totals_are_sums_over_calls(shell):
    run(shell, "import torch")
    r = run(shell, "%%autograd\nw = torch.ones(100, requires_grad=True)\nfor _ in range(3):\n    (w * 2).sum().backward()")
    assert "3 backward calls" in r.row("w").change and "norm" in r.row("w").change
    r = run(shell, "%%autograd\nv = torch.ones(2, requires_grad=True)\n(v * 2).sum().backward()\n(v * 5).sum().backward()")
    assert r.row("v").change == "v.grad was None, now [7.0, 7.0] (added over 2 backward calls)"


def test_distinct_outputs_in_one_cell_are_reported_apart(shell):
    run(shell, "import torch")
    r = run(shell, "%%autograd\nx = torch.tensor(2., requires_grad=True)\n(x * 3).backward()\n(x ** 2).backward()")
    assert [o.name for o in r.outputs] == ["x * 3", "x ** 2"]
    assert r.grad("x", of="x * 3") == 3.0 and r.grad("x", of="x ** 2") == 4.0


def test_outputs_in_a_list_are_named_one_by_one(shell):
    run(shell, "import torch")
    r = run(shell, "%%autograd\na = torch.tensor(1., requires_grad=True)\nb = torch.tensor(2., requires_grad=True)\nu = a * 2\nv = b * 3\ntorch.autograd.backward([u, v])")
    assert [o.name for o in r.outputs] == ["u", "v"]
    r = run(shell, "%%autograd\na = torch.tensor(1., requires_grad=True)\ntorch.autograd.backward([a * 2, a * 3])")
    assert [o.name for o in r.outputs] == ["a * 2", "a * 3"]


def test_a_functions_local_loss_is_not_the_cells_loss(shell):
    run(shell, "import torch")
    r = run(shell, "%%autograd\nw = torch.tensor(2., requires_grad=True)\nloss = w * 100\ndef step():\n    loss = w * 3\n    loss.backward()\nstep()")
    assert [o.name for o in r.outputs] == ["loss in step()"]
    assert r.grad("w") == 3.0


def test_the_gradient_passed_to_backward_is_the_seed_not_an_input(shell):
    run(shell, "import torch")
    r = run(shell, "%%autograd\nx = torch.tensor([1., 2.], requires_grad=True)\ny = x * 2\nv = torch.tensor([1., 10.])\ny.backward(v)")
    assert "v" not in {g.wrt for g in r.gradients}
    assert r.outputs[0].seed == "v" and r.outputs[0].weighted


def test_a_backward_that_raised_is_not_called_unused(shell):
    run(shell, "import torch")
    res = shell.run_cell("%%autograd --out rep\nx = torch.ones(2, requires_grad=True)\ny = (x * 2).sum()\ny.backward()\ny.backward()", store_history=False)
    assert isinstance(res.error_in_exec, RuntimeError)
    r = run(shell, "%%autograd\nx = torch.ones(2, requires_grad=True)\nh = x.exp()\nh.add_(1)\ntry:\n    h.sum().backward()\nexcept RuntimeError:\n    pass")
    row = r.row("x")
    assert row.status == "not_computed" and "raised RuntimeError" in row.reason
    assert r.outputs[0].error.startswith("RuntimeError")


def test_a_cell_that_only_creates_a_leaf_is_told_the_truth(shell):
    run(shell, "import torch")
    r = run(shell, "%%autograd\nw = torch.tensor(4., requires_grad=True)")
    assert "w requires grad" in r.message and "create it with requires_grad=True" not in r.message


def test_training_loop_says_the_grad_is_the_last_steps(shell):
    run(shell, "import torch\nimport torch.nn as nn")
    r = run(
        shell,
        "%%autograd\nlin = nn.Linear(3, 1)\nopt = torch.optim.SGD(lin.parameters(), lr=0.1)\n"
        "for _ in range(100):\n    opt.zero_grad()\n    loss = lin(torch.ones(2, 3)).pow(2).mean()\n    loss.backward()\n    opt.step()",
    )
    assert r.outputs[0].calls == 100
    change = r.row("lin.weight").change
    assert "last of 100 backward calls" in change and "reset by zero_grad" in change
    assert "last of 100 backward calls" in str(r) or "last of 100 calls" in str(r)
