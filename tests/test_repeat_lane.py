"""The repeat lane (``engine/autograd/repeat.py``): a loop's later backward calls, recorded with
the least work, give the report the full path gives, and the lane lets go when the call changes."""

from __future__ import annotations

from typing import Any

import pytest

from tensormagic.engine.autograd import recorder as recorder_module
from tensormagic.engine.autograd.repeat import RepeatLane
from tests.conftest import run

SETUP = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"

LOOPS = {
    "zero_grad": (
        "mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))\nopt = torch.optim.SGD(mlp.parameters(), lr=0.1)\n"
        "x = torch.randn(5, 4)\nfor step in range(6):\n    opt.zero_grad()\n    loss = F.mse_loss(mlp(x), torch.ones(5, 1))\n    loss.backward()\n    opt.step()\n"
    ),
    "accumulating": "w = torch.tensor(2., requires_grad=True)\nfor k in range(5):\n    loss = w * (k + 1)\n    loss.backward()\n",
    "zero_grad_after_the_step": (
        "lin = nn.Linear(3, 2)\nopt = torch.optim.SGD(lin.parameters(), lr=0.1)\n"
        "for _ in range(5):\n    loss = lin(torch.ones(2, 3)).pow(2).mean()\n    loss.backward()\n    opt.step()\n    opt.zero_grad()\n"
    ),
    "op_changes": "w = torch.tensor(2., requires_grad=True)\nfor k in range(6):\n    w.grad = None\n    loss = w * 3 if k < 3 else w + 3\n    loss.backward()\n",
    "two_losses": (
        "w = torch.tensor(2., requires_grad=True)\nfor k in range(4):\n    a = w * 2\n    a.backward()\n    b = w ** 2\n    b.backward()\n"
    ),
    "leaf_rebound": "for k in range(4):\n    w = torch.tensor(float(k), requires_grad=True)\n    loss = w * 3\n    loss.backward()\n",
    "retain_graph": "w = torch.tensor(2., requires_grad=True)\nloss = (w * 3) ** 2\nfor k in range(5):\n    loss.backward(retain_graph=True)\n",
    "hooked_leaf": (
        "w = torch.tensor(2., requires_grad=True)\nseen = []\nw.register_hook(lambda g: seen.append(float(g)))\n"
        "for k in range(5):\n    w.grad = None\n    loss = w * (k + 1)\n    loss.backward()\n"
    ),
    # a call of the lane that raises (caught in the loop): a call of its own, the run around it kept
    "raises_once": (
        "w = torch.tensor(2., requires_grad=True)\nstate = {'k': 0}\n"
        "def hook(g):\n    if state['k'] == 3:\n        raise RuntimeError('boom')\n    return g\n"
        "w.register_hook(hook)\nfor k in range(7):\n    state['k'] = k\n    w.grad = None\n    loss = w * (k + 1)\n"
        "    try:\n        loss.backward()\n    except RuntimeError:\n        pass\n"
    ),
    # a leaf whose .grad a hook sets back to None (an optimizer step in backward): some leaves end a call with none
    "grad_freed_in_a_hook": (
        "w = torch.tensor(2., requires_grad=True)\nv = torch.tensor(3., requires_grad=True)\n"
        "v.register_post_accumulate_grad_hook(lambda p: setattr(p, 'grad', None))\n"
        "for k in range(5):\n    w.grad = None\n    loss = w * v * (k + 1)\n    loss.backward()\n"
    ),
    # an earlier name of the cell holding the output names it (the first mentioned name wins)
    "loss_also_named_best": (
        "w = torch.tensor(2., requires_grad=True)\nbest = None\nfor k in range(6):\n    loss = w * (k + 1)\n    if k == 4:\n        best = loss\n    loss.backward()\n"
    ),
}


def _facts(report: Any) -> dict[str, Any]:
    """What the report says, less what was timed."""
    d = report.to_dict()
    d.pop("cost", None)
    for out in d.get("outputs", []):
        for k in [k for k in out if "second" in k or k.endswith("_ms") or k.endswith("_s")]:
            out.pop(k)
    return d


@pytest.mark.parametrize("name", sorted(LOOPS))
def test_the_lane_reports_what_the_full_path_reports(shell, monkeypatch, name):
    taken: list[int] = []  # per call the lane was asked about: it took the call (a record of its own, or folded)
    real_record, real_fold = RepeatLane.record, RepeatLane.fold_begin

    def counted(self: RepeatLane, *args: Any, **kwargs: Any) -> Any:
        got = real_record(self, *args, **kwargs)
        taken.append(got is not None)
        return got

    def folded(self: RepeatLane, *args: Any, **kwargs: Any) -> Any:
        got = real_fold(self, *args, **kwargs)
        if got:
            taken.append(True)
        return got

    monkeypatch.setattr(RepeatLane, "record", counted)
    monkeypatch.setattr(RepeatLane, "fold_begin", folded)
    run(shell, SETUP)
    with_lane = run(shell, "%%autograd\n" + LOOPS[name])
    with_lane_facts = _facts(with_lane)
    if name == "hooked_leaf":  # the user's hook ran once a call, as in a plain run
        assert shell.user_ns["seen"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    monkeypatch.setattr(recorder_module.RepeatLane, "open", classmethod(lambda cls, *a, **k: None))
    run(shell, SETUP)
    full = run(shell, "%%autograd\n" + LOOPS[name])
    full_facts = _facts(full)
    assert with_lane_facts == full_facts, [(k, j, a[j], b.get(j)) for k in full_facts if isinstance(full_facts[k], list) for a, b in zip(with_lane_facts[k], full_facts[k]) if a != b for j in (a if isinstance(a, dict) else {}) if a[j] != b.get(j)]
    if name in ("zero_grad", "accumulating", "zero_grad_after_the_step", "retain_graph", "raises_once", "grad_freed_in_a_hook"):
        assert sum(taken) >= 3  # the later calls took the lane
    if name in ("op_changes", "two_losses", "leaf_rebound"):
        assert not all(taken) or not taken  # the lane let go (or never opened) where the call changed


def test_a_loop_is_kept_in_a_few_records_however_many_steps(shell, monkeypatch):
    """A zero_grad loop's calls capture nothing: the lane keeps them in one run record (no record,
    and no garbage, per step), and the report still counts every call."""
    from tensormagic.engine.autograd import session as session_module

    seen: list[Any] = []
    real_report = session_module.AutogradSession.report

    def report(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(len(self.recorder.calls))
        return real_report(self, *args, **kwargs)

    monkeypatch.setattr(session_module.AutogradSession, "report", report)
    run(shell, SETUP)
    r = run(shell, "%%autograd\n" + LOOPS["zero_grad"].replace("range(6)", "range(300)"))
    assert seen == [3]  # the first call (walked), the second (no walk, opens the lane), the run of 298
    assert r.outputs[0].calls == 300
    assert "last of 300 backward calls" in r.row("mlp.0.weight").change


def test_the_lane_keeps_no_tensor_alive(shell):
    import gc
    import weakref

    run(shell, SETUP)
    run(shell, "%%autograd\n" + LOOPS["zero_grad"])
    ref = weakref.ref(shell.user_ns["mlp"][0].weight)
    run(shell, "del mlp, opt, loss")
    gc.collect()
    assert ref() is None


def test_a_leaf_made_anew_at_each_step_is_not_said_to_be_reset(shell):
    """A loop that makes ``w`` anew at each step: the freed leaves' ids may be reused by the next
    one, which must not read as one leaf whose .grad was reset between calls."""
    run(shell, SETUP)
    r = run(shell, "%%autograd\nkeep = []\nfor k in range(6):\n    w = torch.tensor(float(k), requires_grad=True)\n    loss = w * 3\n    loss.backward()\n")
    assert r.row("w").change == "w.grad was None, now 3.0"
    assert not any("reset by zero_grad" in n for n in r.notes)


@pytest.mark.parametrize("lane", [True, False])
def test_the_graph_shown_is_the_last_calls_own(shell, monkeypatch, lane):
    """A loop's calls share the graph of the call that was walked; when the last call's graph is
    not that one (another op at another line, with the same output name), the report shows the
    last call's own graph, not the first's."""
    if not lane:
        monkeypatch.setattr(recorder_module.RepeatLane, "open", classmethod(lambda cls, *a, **k: None))
    run(shell, SETUP)
    cell = "w = torch.tensor(2., requires_grad=True)\nfor k in range(6):\n    w.grad = None\n    if k < 4:\n        loss = w * 3\n    else:\n        loss = (w + 3) * 2\n    loss.backward()\n"
    r = run(shell, "%%autograd\n" + cell)
    assert sorted(n.op for n in r.graph.nodes) == ["AccumulateGrad", "AddBackward0", "MulBackward0"]
    assert r.row("w").grad == 2.0
    assert r.outputs[0].calls == 6
