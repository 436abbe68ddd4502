"""What the ``%%autograd`` report reads once the cell is over is true of the cell's last calls: a
loop's last graph (with its lines), a ``.grad`` written through ``.data``, earlier outputs that
other names still hold.  Each loop runs with the repeat lane and with it switched off."""

from __future__ import annotations

import pytest

from tensormagic.engine.autograd import recorder as recorder_module
from tests.conftest import run

SETUP = "import torch\ntorch.manual_seed(0)\n"


@pytest.fixture(params=[True, False], ids=["lane", "no lane"])
def lane(request, monkeypatch):
    if not request.param:
        monkeypatch.setattr(recorder_module.RepeatLane, "open", classmethod(lambda cls, *a, **k: None))
    return request.param


def test_a_loops_changed_graph_has_its_own_lines(shell, lane):
    run(shell, SETUP)
    cell = (
        "w = torch.tensor(2., requires_grad=True)\nfor k in range(6):\n    w.grad = None\n    if k < 3:\n"
        "        loss = (w * 3).sum()\n    else:\n        loss = (w.sin()).sum()\n    loss.backward()\n"
    )
    r = run(shell, "%%autograd\n" + cell)
    lines = {n.op: n.line for n in r.graph.nodes}
    assert lines.get("SinBackward0") == 7 and lines.get("SumBackward0") == 7, lines
    assert "MulBackward0" not in lines


def test_an_output_changed_in_place_after_its_call_keeps_the_calls_graph(shell, lane):
    run(shell, SETUP)
    cell = "w = torch.tensor([2., 1.], requires_grad=True)\nfor k in range(5):\n    w.grad = None\n    loss = (w * 3).sum()\n    loss.backward()\n    loss /= 5\n"
    r = run(shell, "%%autograd\n" + cell)
    assert sorted(n.op for n in r.graph.nodes) == ["AccumulateGrad", "MulBackward0", "SumBackward0"]


def test_a_grad_written_through_data_is_read_as_it_is_now(shell, lane):
    run(shell, SETUP)
    r = run(shell, "%%autograd\nw = torch.tensor(2., requires_grad=True)\nloss = w * 3\nloss.backward()\nw.grad.data.zero_()\n")
    assert r.row("w").change == "w.grad was None, now 0.0"


def test_an_earlier_steps_output_another_name_holds_is_not_an_other_tensor(shell, lane):
    run(shell, SETUP)
    cell = (
        "w = torch.tensor(2., requires_grad=True)\nprev = None\nfor k in range(6):\n    w.grad = None\n"
        "    if prev is not None:\n        old = prev\n    loss = w * (k + 1)\n    loss.backward()\n    prev = loss\n"
    )
    r = run(shell, "%%autograd\n" + cell)
    assert [row.wrt for row in r.gradients] == ["w"], [(row.wrt, row.status) for row in r.gradients]


def test_an_intermediate_made_anew_at_each_step_is_not_called_unused(shell, lane):
    """``out = model(x)`` in a training loop: the output depends on it at every step; the report
    says its gradient was not recorded at the loop's later calls, never that it is unused."""
    run(shell, SETUP + "import torch.nn as nn\nimport torch.nn.functional as F\n")
    cell = (
        "mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))\nopt = torch.optim.SGD(mlp.parameters(), lr=0.1)\n"
        "x = torch.randn(5, 4)\nfor step in range(6):\n    opt.zero_grad()\n    out = mlp(x)\n"
        "    loss = F.mse_loss(out, torch.ones(5, 1))\n    loss.backward()\n    opt.step()\n"
    )
    r = run(shell, "%%autograd\n" + cell)
    row = r.row("out")
    assert row.status.value == "not_computed", (row.status, row.reason)
    assert "intermediate result in the graph of loss" in row.reason
    assert r.row("mlp.0.weight").status.value == "ok"
