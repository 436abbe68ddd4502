"""Every magic leaves global state as it found it, also when it fails (issue: never leak).

Reuses the snapshot of tests/test_tensorinfo_robustness.py (mode stacks, saved-tensor hooks,
grad/anomaly/inference modes, default dtype and device, RNGs, warnings, IPython events, namespace).
"""

from __future__ import annotations

import pytest
import torch
from IPython.core.error import UsageError

from tests.conftest import run
from tests.test_tensorinfo_robustness import assert_same_state, global_state

SETUP = """
import numpy as np
import torch
a = np.arange(3.)
t = torch.from_numpy(a)
net = torch.nn.Linear(3, 1)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
m = torch.ones(2, device="meta")
"""


@pytest.mark.parametrize(
    "line",
    [
        "",  # the placement panel
        "--all abc",  # a device that does not exist
        "t m cpu",  # meta -> cpu fails half-way: nothing moves
        "nope cpu",  # an unknown name
        pytest.param(
            "--pin-memory t cpu",  # pinned memory without a GPU (with one it is a real move)
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="pinning fails only without a GPU"),
        ),
    ],
)
def test_todevice_that_fails_or_only_shows_leaves_state_alone(shell, line):
    run(shell, SETUP)
    before = global_state(shell)
    try:
        shell.run_line_magic("todevice", line)
    except UsageError:
        pass
    assert_same_state(before, global_state(shell))


def test_todevice_move_changes_only_the_names_it_moves(shell):
    run(shell, SETUP)
    before = global_state(shell)
    shell.run_line_magic("todevice", "t net opt meta")
    after = global_state(shell)
    moved = {"t"}  # rebound; net and opt move in place
    assert {k for k in before["namespace"] if before["namespace"][k] != after["namespace"].get(k)} == moved
    before["namespace"] = after["namespace"] = {}
    assert_same_state(before, after)


@pytest.mark.parametrize(
    "cell",
    [
        "w = torch.tensor(2., requires_grad=True)\ny = w * w\ny.backward()",
        "w = torch.tensor(2., requires_grad=True)\nraise ValueError('boom')",
    ],
)
def test_autograd_restores_state_after_the_cell(shell, cell):
    run(shell, SETUP + "w = None\ny = None\n")
    before = global_state(shell)
    try:
        shell.run_cell_magic("autograd", "", cell)
    except ValueError:
        pass
    after = global_state(shell)
    before["namespace"] = {k: v for k, v in before["namespace"].items() if k not in ("w", "y")}
    after["namespace"] = {k: v for k, v in after["namespace"].items() if k not in ("w", "y")}
    assert_same_state(before, after)


def test_autograd_lines_without_a_tracer_left_behind(shell):
    """Cell lines come from line events in the cell's own frames; the tracer is removed after."""
    import sys

    run(shell, "import torch")
    r = shell.run_cell_magic(
        "autograd",
        "",
        "w = torch.tensor(2., requires_grad=True)\ndef f(a):\n    return a * 3\ny = f(w) + 1\ny.backward()",
    )
    assert sys.gettrace() is None
    lines = {n["op"]: n["line"] for n in r.to_dict()["graph"]["nodes"] if n.get("op")}
    assert lines.get("MulBackward0") == 3 and lines.get("AddBackward0") == 4, lines


def test_autograd_lines_after_a_backward_and_no_tracer_during_analysis(shell):
    """The line tracer is off while the magic analyses a backward call (a global trace function
    would be called on every Python call of the graph walk) and on again for the lines after it."""
    import sys

    from tensormagic.engine.autograd import recorder

    seen: list[object] = []
    walk = recorder.walk_graph

    def spy(*args, **kwargs):
        seen.append(sys.gettrace())
        return walk(*args, **kwargs)

    run(shell, "import torch")
    recorder.walk_graph = spy
    try:
        r = shell.run_cell_magic(
            "autograd",
            "",
            "w = torch.tensor(2., requires_grad=True)\ny = w * 3\ny.backward()\nz = w.exp() + 1\nz.backward()",
        )
    finally:
        recorder.walk_graph = walk
    assert seen and all(t is None for t in seen), seen
    assert sys.gettrace() is None
    lines = {n["op"]: n["line"] for n in r.to_dict()["graph"]["nodes"] if n.get("op")}
    assert lines.get("ExpBackward0") == 4 and lines.get("AddBackward0") == 4, lines


def test_autograd_keeps_a_running_tracer(shell):
    """Under a debugger or coverage (sys.settrace in use) the magic leaves their tracer alone."""
    import sys

    def tracer(frame, event, arg):
        return None

    run(shell, "import torch")
    sys.settrace(tracer)
    try:
        r = shell.run_cell_magic("autograd", "", "w = torch.tensor(2., requires_grad=True)\ny = w * 3\ny.backward()")
        active = sys.gettrace()
    finally:
        sys.settrace(None)
    assert active is tracer
    assert "line 2: y = w * 3" in str(r)
