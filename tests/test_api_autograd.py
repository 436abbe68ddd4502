"""``with tensormagic.autograd() as run:`` observes plain Python code as %%autograd observes a cell."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import tensormagic


def _step(calls: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    w = torch.randn(3, requires_grad=True)
    b = torch.tensor(0.5, requires_grad=True)
    h = w * 2
    h.register_hook(lambda g: calls.append("h"))
    loss = (h.sin() + b).sum()
    loss.backward()
    return w, b, loss


def test_a_block_behaves_as_without_it_and_reports():
    plain_calls: list[str] = []
    w0, b0, loss0 = _step(plain_calls)
    calls: list[str] = []
    with tensormagic.autograd() as run:
        w, b, loss = _step(calls)
    assert calls == plain_calls == ["h"]
    assert torch.equal(w.grad, w0.grad) and torch.equal(b.grad, b0.grad) and loss.item() == loss0.item()
    report = run.report
    assert report is not None and report.outputs[0].source == "backward"
    assert report.grad("w") == pytest.approx(w0.grad.tolist())
    assert report.row("b").status == "ok"


def test_names_and_lines_come_from_the_block():
    x = torch.tensor(3.0)
    w = torch.tensor(4.0, requires_grad=True)
    with tensormagic.autograd() as run:
        y = w * x
        y.backward()
    report = run.report
    assert [o.name for o in report.outputs] == ["y"]
    assert report.row("x").status == "no_requires_grad"
    mul = next(n for n in report.graph.nodes if n.op == "MulBackward0")
    assert mul.code == "y = w * x"


def test_options_are_the_magics():
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    with tensormagic.autograd(of=["z"], jacobian=False) as run:
        z = a**2
    assert run.report.outputs[0].source == "--of" and run.report.jacobian == []
    assert run.report.grad("a") == [2.0, 4.0] and a.grad is None


def test_an_exception_in_the_block_goes_on_and_the_report_is_still_built():
    w = torch.tensor(2.0, requires_grad=True)
    with pytest.raises(KeyError):
        with tensormagic.autograd() as run:
            (w * 3).backward()
            raise KeyError("mine")
    assert isinstance(run.error, KeyError) and run.report is not None and run.report.grad("w") == 3.0
    assert torch.autograd.__dict__["_engine_run_backward"] is torch.autograd.graph._engine_run_backward
    assert sys.gettrace() is None or "coverage" in type(sys.gettrace()).__module__


def test_importing_tensormagic_imports_neither_ipython_nor_torch():
    code = "import sys, tensormagic; print('IPython' in sys.modules, 'ipywidgets' in sys.modules, 'torch' in sys.modules, tensormagic.__all__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("False False False") and "'autograd'" in out


def test_a_script_uses_it_without_ipython(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, torch, tensormagic
            lin = torch.nn.Linear(2, 1)
            with tensormagic.autograd() as run:
                for _ in range(3):
                    lin.zero_grad()
                    loss = lin(torch.ones(4, 2)).pow(2).mean()
                    loss.backward()
            print(run.report.outputs[0].calls, run.report.row("lin.weight").status, "IPython" in sys.modules)
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["3", "ok", "False"]


def test_only_what_the_block_uses_is_reported_not_the_rest_of_the_file(tmp_path):
    script = textwrap.dedent(
        """
        import torch, tensormagic
        model = torch.nn.Sequential(torch.nn.Linear(2, 2))
        w = torch.tensor(4., requires_grad=True)
        x = torch.tensor(3.)
        with tensormagic.autograd() as run:
            y = w * x
            y.backward()
        def inside():
            w2 = torch.tensor(2., requires_grad=True)
            with tensormagic.autograd() as run2:
                z = w2 * 3
                z.backward()
            return run2.report
        print(sorted(g.wrt for g in run.report.gradients), sorted(g.wrt for g in inside().gradients))
        """
    )
    path = tmp_path / "script.py"
    path.write_text(script)
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['w', 'x'] ['w2']"  # not the model's parameters, nor the globals inside()
