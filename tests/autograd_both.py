"""Run a cell plainly and under ``%%autograd`` in fresh namespaces, and compare what the user sees.

``run_both(shell, capsys, setup, cell)`` runs ``setup`` then ``cell`` twice in a real
InteractiveShell - once as a plain cell, once under the magic - from a fresh namespace and the
same RNG seed each time, and returns both :class:`Outcome`\\ s and the report.
:func:`assert_same` compares every tensor and ``.grad`` in the namespace (module parameters and
buffers too), lists and numbers the cell made (hook counters), the exception, the printed
output and warnings, and the global torch settings.
"""

from __future__ import annotations

import re
import types
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from tests.conftest import run


_CODE = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


@dataclass
class Outcome:
    values: dict[str, Any] = field(default_factory=dict)
    error: tuple[str, str] | None = None
    out: str = ""
    err: str = ""
    warnings: list[tuple[str, str]] = field(default_factory=list)
    settings: tuple[Any, ...] = ()


def _settings() -> tuple[Any, ...]:
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    return (
        torch.is_grad_enabled(),
        torch.is_anomaly_enabled(),
        torch.is_inference_mode_enabled(),
        torch.get_default_dtype(),
        str(torch.get_default_device()),
        torch._C._len_torch_function_stack(),
        len(_get_current_dispatch_mode_stack()),
        torch._C._autograd._top_saved_tensors_default_hooks(False) is not None,
        torch.autograd.__dict__["_engine_run_backward"],
        torch.Tensor.register_hook,
        len(torch.nn.modules.module._global_forward_pre_hooks),
        len(torch.nn.modules.module._global_forward_hooks),
    )


def _plain(value: Any, depth: int = 0) -> Any:
    """A comparable snapshot of a namespace value (tensors by value, grads too)."""
    if isinstance(value, torch.Tensor):
        if type(value) not in (torch.Tensor, torch.nn.Parameter) or value.is_nested or value.device.type == "meta":
            return ("tensor-like", type(value).__name__, str(value.dtype))
        data = value.detach().clone()
        grad = value.grad.detach().clone() if value.is_leaf and value.grad is not None else None
        return ("tensor", data, value.requires_grad, grad, value._version)
    if isinstance(value, torch.nn.Module):
        state = {k: _plain(v) for k, v in value.state_dict(keep_vars=True).items()}
        return ("module", state, value.training)
    if isinstance(value, (list, tuple)) and depth < 3:
        return (type(value).__name__, [_plain(v, depth + 1) for v in value])
    if isinstance(value, dict) and depth < 3:
        return ("dict", {str(k): _plain(v, depth + 1) for k, v in value.items()})
    if isinstance(value, (int, float, str, bool, type(None), complex)):
        return value
    return ("object", type(value).__name__)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b) or (a.is_floating_point() and torch.allclose(a, b, rtol=0, atol=0, equal_nan=True)))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return bool(a == b)


def _outcome(shell: Any, capsys: Any, code: str) -> tuple[Outcome, Any]:
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        res = shell.run_cell(code, store_history=False)
    captured = capsys.readouterr()
    err = res.error_in_exec or res.error_before_exec
    ns = shell.user_ns
    hidden = set(shell.user_ns_hidden)
    values = {k: _plain(v) for k, v in list(ns.items()) if not k.startswith("_") and k not in hidden and not isinstance(v, _CODE)}
    outcome = Outcome(
        values=values, error=(type(err).__name__, str(err)) if err is not None else None, out=captured.out, err=captured.err,
        warnings=[(w.category.__name__, str(w.message)) for w in seen], settings=_settings(),
    )
    return outcome, ns.get("_tm_report")


def run_both(shell: Any, capsys: Any, setup: str, cell: str, options: str = "") -> tuple[Outcome, Outcome, Any]:
    """``cell`` plainly and under ``%%autograd options``, each from ``setup`` in a fresh namespace."""
    outcomes = []
    report = None
    for magic in (False, True):
        shell.reset(new_session=False)
        torch.manual_seed(0)
        run(shell, "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n" + setup)
        code = f"%%autograd --out _tm_report {options}\n{cell}" if magic else cell
        outcome, got = _outcome(shell, capsys, code)
        outcomes.append(outcome)
        if magic:
            report = got
        _reset_settings()
    return outcomes[0], outcomes[1], report


def _reset_settings() -> None:
    """What a cell may leave behind, undone before the next run (both runs start alike)."""
    while torch._C._len_torch_function_stack():
        torch._C._pop_torch_function_stack()
    while torch._C._autograd._top_saved_tensors_default_hooks(False) is not None:
        torch._C._autograd._pop_saved_tensors_default_hooks()
    torch.set_grad_enabled(True)
    torch.autograd.set_detect_anomaly(False)
    torch.set_default_device(None)
    torch.set_default_dtype(torch.float32)


def _split(text: str) -> tuple[str, str]:
    """(what the cell printed, its traceback from the cell's own frame on).  A cell magic's
    traceback starts with IPython's line that calls the magic (as under %%time) and marks the
    magic's hidden frames; from the cell's own frame on, it is the same."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = plain.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"^-{20,}\s*$", line) and "Traceback" in "".join(lines[i + 1 : i + 2])), len(lines))
    before, tb = "".join(lines[:start]), lines[start:]
    cells = [i for i, line in enumerate(tb) if line.startswith("Cell In[")]
    if cells:
        first = next((i for i in cells if "run_cell_magic" not in "".join(tb[i : i + 3])), cells[-1])
        tb = tb[first:]
    return before, "".join(line for line in tb if line.strip() and "skipping hidden" not in line)


def assert_same(plain: Outcome, magic: Outcome, report: Any = None) -> None:
    """Everything the user can see is the same with the magic as without it."""
    assert plain.error == magic.error, (plain.error, magic.error)
    for a, b in ((plain.out, magic.out), (plain.err, magic.err)):
        (a_text, a_tb), (b_text, b_tb) = _split(a), _split(b)
        assert a_tb == b_tb, (a_tb, b_tb)
        assert b_text.startswith(a_text), (a_text, b_text)  # then the report, when there is one
    assert plain.warnings == magic.warnings, (plain.warnings, magic.warnings)
    assert plain.settings == magic.settings, (plain.settings, magic.settings)
    assert plain.values.keys() == magic.values.keys(), (plain.values.keys() ^ magic.values.keys())
    for k in plain.values:
        assert _same(plain.values[k], magic.values[k]), (k, plain.values[k], magic.values[k])
    if plain.error is None:
        assert report is not None and type(report).__name__ == "AutogradReport"


__all__ = ["Outcome", "assert_same", "run_both"]
