"""Cells a learner writes, where a report used to say something false (found by trying the product)."""

from __future__ import annotations

import re

import pytest
import torch
from IPython.core.error import UsageError

from tests.conftest import run


@pytest.fixture
def ag(shell):
    run(shell, "import torch")
    yield shell
    torch.set_grad_enabled(True)


def rows(report) -> dict[str, object]:
    return {g.wrt: g for g in report.gradients}


def test_the_result_of_autograd_grad_is_not_called_an_input(ag):
    r = run(ag, "%%autograd\nx = torch.tensor([1., 2., 3.], requires_grad=True)\ny = (x ** 3).sum()\ng, = torch.autograd.grad(y, x)\nprint(g)")
    got = rows(r)
    assert "g" not in got
    assert got["x"].status == "ok" and got["x"].grad == [3.0, 12.0, 27.0]


def test_two_outputs_of_one_cell_are_not_unused_inputs_of_each_other(ag):
    r = run(ag, "%%autograd\na = torch.ones(2, requires_grad=True)\nb = a * 2\nc = b.sum()\nc.backward()\nc2 = (a * a).sum()\nc2.backward()")
    pairs = {(g.wrt, g.of): g.status for g in r.gradients}
    assert ("c2", "c") not in pairs and ("c", "c2") not in pairs and ("b", "c2") not in pairs
    assert pairs[("a", "c")] == "ok" and pairs[("a", "c2")] == "ok"


def test_an_unused_intermediate_is_not_told_to_change_requires_grad(ag):
    r = run(ag, "%%autograd --of (w**2).sum()\nw = torch.tensor([1., 2.], requires_grad=True)\ny = w * 2")
    y = rows(r)["y"]
    assert y.status == "unused" and "requires_grad_(False)" not in y.fix and "intermediate" in y.fix


def test_grad_mode_off_is_the_reason_given(ag):
    r = run(ag, "%%autograd\ntorch.set_grad_enabled(False)\nk = torch.ones(2, requires_grad=True)\nm = k * 2")
    assert not torch.is_grad_enabled()  # the cell's setting persists, as in a plain cell
    assert "grad mode is off" in r.message and "computes nothing" not in r.message


def test_the_backward_call_line_is_the_line_of_the_call(ag):
    r = run(ag, "%%autograd\nw = torch.tensor(4., requires_grad=True)\ny = w * 3\nz = y + 1\n\nz.backward()")
    out = r.outputs[0]
    assert (out.name, out.line, out.call_line) == ("z", 3, 5)
    assert "backward at line 5" in str(r)


def test_a_forward_nan_does_not_blame_the_op_that_made_the_named_value(ag):
    r = run(ag, "%%autograd\nx = torch.tensor([0., 1.], requires_grad=True)\ny = torch.log(x).sum()\ny.backward()")
    assert r.non_finite["where"] == "forward" and r.non_finite["name"] == "y"
    text = str(r)
    assert "first turns NaN/inf in forward" not in text
    assert "the first value of the cell holding NaN/inf is y, made at line 2" in text


def test_tracebacks_name_the_cell_as_a_plain_cell_does(ag, capsys):
    def shown() -> str:
        captured = capsys.readouterr()
        return re.sub(r"\x1b\[[0-9;]*m", "", captured.out + captured.err)

    ag.run_cell("raise ValueError('plain')", store_history=True)
    plain = shown()
    ag.run_cell("%%autograd\nraise ValueError('boom')", store_history=True)
    magic = shown()
    number = int(plain.split("Cell In[")[1].split("]")[0])
    assert f"Cell In[{number + 1}], line 1" in magic and "boom" in magic
    assert f"Cell In[{number + 2}]" not in magic


@pytest.mark.parametrize(
    ("line", "meant"),
    [("%tensorinfo --exat x", "--exact"), ("%todevice --al cpu", "--all")],
)
def test_a_misspelled_option_names_the_option_meant(ag, line, meant):
    run(ag, "x = torch.ones(2)")
    with pytest.raises(UsageError, match=f"unknown option .*did you mean {meant}\\?"):
        ag.run_line_magic(line.split()[0][1:], " ".join(line.split()[1:]))


def test_the_cell_magic_help_shows_two_percent_signs(ag):
    doc = ag.find_cell_magic("autograd").__doc__
    assert "%%autograd [--of NAMES]" in doc and "not_computed" in doc


def test_the_namespace_table_groups_a_name_for_a_parameter_and_counts_shared_bytes_once():
    import numpy as np

    import tensormagic

    model = torch.nn.Linear(2, 2)
    a = np.zeros(4)
    names = {"model": model, "wref": model.weight, "a": a, "t": torch.from_numpy(a), "u": torch.ones(3)}
    r = tensormagic.tensorinfo(namespace=names)
    assert sorted(map(sorted, r.groups)) == [["a", "t"], ["model", "wref"]]
    assert {e.name: e.relation for e in r.entries}["wref"] == "is model.weight"
    assert r.total_bytes == 16 + 32 + 12  # wref, a (t shares it), u


def test_a_cell_whose_backward_raises_still_explains_why_then_raises_the_same(ag, capsys):
    code = "w = torch.tensor(2., requires_grad=True)\nd = w.detach()\nloss = (d * 3) ** 2\nloss.backward()"
    plain = ag.run_cell(code)
    capsys.readouterr()
    magic = ag.run_cell("%%autograd\n" + code)
    shown = capsys.readouterr().out
    assert type(magic.error_in_exec) is type(plain.error_in_exec) is RuntimeError
    assert str(magic.error_in_exec) == str(plain.error_in_exec)
    assert "d was made with .detach() at line 2" in shown and shown.index("detach") < shown.index("Traceback")


def test_a_cell_that_raises_without_computing_gradients_shows_only_its_traceback(ag, capsys):
    ag.run_cell("%%autograd\nraise ValueError('boom')")
    shown = capsys.readouterr().out
    assert "boom" in shown and "autograd ·" not in shown


def test_todevice_says_the_device_comes_last_and_that_gpu_means_cuda(ag):
    run(ag, "x = torch.ones(2)")
    with pytest.raises(UsageError, match=r"^the device comes last: %todevice x cpu$"):
        ag.run_line_magic("todevice", "cpu x")
    with pytest.raises(UsageError, match=r"did you mean cuda\?"):
        ag.run_line_magic("todevice", "x gpu")


def test_a_complex_tensors_headline_says_its_range_is_of_the_magnitudes(ag):
    r = run(ag, "%tensorinfo torch.tensor([1+2j, 3-4j])")
    assert "|z| range [2.23607, 5]" in str(r).splitlines()[1]


def test_a_dispatch_mode_in_the_cell_counts_the_same_ops_as_in_a_plain_cell(ag):
    setup = (
        "from torch.utils._python_dispatch import TorchDispatchMode\n"
        "class Count(TorchDispatchMode):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.n = 0\n"
        "    def __torch_dispatch__(self, func, types, args=(), kwargs=None):\n"
        "        self.n += 1\n"
        "        return func(*args, **(kwargs or {}))\n"
    )
    cell = "v = torch.tensor([1., 2.], requires_grad=True)\nmode = Count(); mode.__enter__()\nf = torch.stack([v[0] * v[1], v[0] + v[1] ** 2])\nmode.__exit__(None, None, None)\ncounted = mode.n"
    run(ag, setup)
    run(ag, cell)
    plain = ag.user_ns["counted"]
    r = run(ag, "%%autograd\n" + cell)
    assert ag.user_ns["counted"] == plain
    assert r.jacobian and r.jacobian[0].values == [[2.0, 1.0], [1.0, 4.0]]
