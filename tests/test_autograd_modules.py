"""Which module made which node (engine/autograd/modules.py): true, cheap, and gone after the cell.

The spans come from global module hooks registered only while the cell runs; the tests check the
modules against what the models' structure says, that nothing is left behind (also when the cell
raises), that a training loop stops recording once its graph repeats, and that cells behave as
without the magic.
"""

from __future__ import annotations

import torch
import torch.nn.modules.module as nn_module

from tests.autograd_both import assert_same, run_both
from tests.conftest import run

SETUP = """import torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)
mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 8), nn.Tanh()), nn.Linear(8, 1))
xb = torch.randn(5, 4)
"""


def no_global_hooks() -> bool:
    return not nn_module._global_forward_pre_hooks and not nn_module._global_forward_hooks


def modules_of(report) -> dict[str, str | None]:
    """op/leaf label -> the name of the module that made (or holds) it."""
    g = report.graph
    out = {}
    for n in g.nodes:
        label = n.name or f"{n.op}#{n.id}"
        out[label] = g.modules[n.module].name if n.module is not None else None
    return out


def test_each_node_maps_to_the_innermost_module_that_made_it(shell):
    run(shell, SETUP)
    r = shell.run_cell_magic("autograd", "", "loss = F.mse_loss(mlp(xb), torch.zeros(5, 1))\nloss.backward()")
    g = r.graph
    names = [m.name for m in g.modules]
    assert names[:2] == ["mlp", "mlp.0"] and set(names) == {"mlp", "mlp.0", "mlp.1", "mlp.2", "mlp.2.0", "mlp.2.1", "mlp.3"}
    by_op: dict[str, list[str | None]] = {}
    for n in g.nodes:
        by_op.setdefault(n.op, []).append(g.modules[n.module].name if n.module is not None else None)
    assert by_op["MseLossBackward0"] == [None]  # F.mse_loss: no module made it
    assert sorted(by_op["AddmmBackward0"]) == ["mlp.0", "mlp.2.0", "mlp.3"]
    assert by_op["ReluBackward0"] == ["mlp.1"] and by_op["TanhBackward0"] == ["mlp.2.1"]
    mods = modules_of(r)
    assert mods["mlp.0.weight"] == "mlp.0" and mods["mlp.2.0.bias"] == "mlp.2.0"  # a leaf: the module holding it
    parent = {m.name: (g.modules[m.parent].name if m.parent is not None else None) for m in g.modules}
    assert parent == {"mlp": None, "mlp.0": "mlp", "mlp.1": "mlp", "mlp.2": "mlp", "mlp.2.0": "mlp.2", "mlp.2.1": "mlp.2", "mlp.3": "mlp"}
    assert g.module_unknown == 0
    assert [m.type for m in g.modules][:2] == ["Sequential", "Linear"]
    assert no_global_hooks()


def test_a_module_no_variable_holds_is_named_by_its_class_inside_its_caller(shell):
    run(shell, SETUP + "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.inner = nn.Linear(4, 1)\n"
        "    def forward(self, x):\n        return torch.nn.functional.relu(self.inner(x)) + self.extra(x)\n"
        "net = Net()\nnet.extra = lambda x: helper(x)\nhelper = nn.Linear(4, 1)\n")
    r = shell.run_cell_magic("autograd", "", "out = net(xb).sum() + nn.Linear(4, 1)(xb).sum()\nout.backward()")
    g = r.graph
    info = {m.name: m for m in g.modules}
    assert set(info) == {"net", "net.inner", "helper", "Linear"}
    assert info["Linear"].named is False and info["Linear"].parent is None
    assert g.modules[info["helper"].parent].name == "net"  # not a child of net: inside net's call
    assert g.modules[info["net.inner"].parent].name == "net"
    relu = next(n for n in g.nodes if n.op == "ReluBackward0")
    assert g.modules[relu.module].name == "net"


def test_hooks_are_gone_after_a_cell_that_raises(shell):
    run(shell, SETUP)
    res = shell.run_cell("%%autograd\nloss = mlp(torch.ones(2, 5)).sum()\nloss.backward()", store_history=False)
    assert isinstance(res.error_in_exec, RuntimeError)
    assert no_global_hooks()


def test_a_training_loop_records_module_calls_only_until_its_graph_repeats(shell):
    run(shell, SETUP + "opt = torch.optim.SGD(mlp.parameters(), lr=0.01)\ncalls = []\n")
    run(shell, "from tensormagic.engine.autograd import modules as M\noriginal_pre = M.ModuleCalls._pre\n"
        "def counting(self, module, args):\n    calls.append(1)\n    return original_pre(self, module, args)\nM.ModuleCalls._pre = counting")
    try:
        r = shell.run_cell_magic("autograd", "", "for step in range(20):\n    opt.zero_grad()\n    loss = F.mse_loss(mlp(xb), torch.zeros(5, 1))\n    loss.backward()\n    opt.step()")
    finally:
        run(shell, "M.ModuleCalls._pre = original_pre")
    per_step = 7  # mlp, mlp.0, mlp.1, mlp.2, mlp.2.0, mlp.2.1, mlp.3
    assert len(shell.user_ns["calls"]) == 2 * per_step  # steps 0 and 1; from the repeat on, no hook runs
    assert r.graph.module_unknown == 0 and {m.name for m in r.graph.modules} >= {"mlp.0", "mlp.3"}
    assert all(n.module is not None for n in r.graph.nodes if n.op == "AddmmBackward0")
    assert no_global_hooks()


def test_a_backward_inside_a_modules_forward_keeps_later_nodes_in_that_module(shell):
    """The hooks pause at a repeated graph and resume at a new one, inside a forward: the calls
    running then are read from the Python stack, so what the forward makes next is still its."""
    run(shell, SETUP + "class Penalty(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.lin = nn.Linear(4, 4)\n"
        "    def forward(self, x):\n        h = self.lin(x)\n        h.sum().backward(retain_graph=True)\n        return (h * 2).sum()\n"
        "pen = Penalty()\n")
    r = shell.run_cell_magic("autograd", "", "out = pen(xb)\nout.backward()")
    g = r.graph
    mul = next(n for n in g.nodes if n.op == "MulBackward0")
    assert g.modules[mul.module].name == "pen"
    assert no_global_hooks()


def test_cells_with_modules_behave_as_without_the_magic(shell, capsys):
    setup = "net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))\ncalls = []\n"
    cell = (
        "net[0].register_forward_pre_hook(lambda m, a: calls.append('pre'))\n"
        "net[2].register_forward_hook(lambda m, i, o: calls.append('fwd'))\n"
        "torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: calls.append(type(m).__name__))\n"
        "for _ in range(3):\n    loss = net(torch.ones(2, 3)).sum()\n    loss.backward()\n"
        "torch.nn.modules.module._global_forward_hooks.clear()"
    )
    plain, magic, report = run_both(shell, capsys, setup, cell)
    assert_same(plain, magic, report)
    assert plain.values["calls"][1].count("fwd") == 3 and plain.values["calls"][1].count("Sequential") == 3
