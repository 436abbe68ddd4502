"""%todevice through a real InteractiveShell: placement, moves, rebinding, errors and panels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from IPython.core.error import UsageError

from tests.conftest import run, shown_as_one_line_usage_error

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the messages of a machine without CUDA")

SETUP = """
import numpy as np
import torch
a = np.arange(6.0)
t = torch.from_numpy(a)
z = t
model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
opt = torch.optim.Adam(model.parameters())
model(torch.randn(2, 3)).sum().backward()
opt.step()
batch = {"x": torch.ones(2, 3), "y": torch.tensor([0, 1])}
"""


def test_placement_panel_lists_everything_and_the_devices(shell):
    run(shell, SETUP)
    r = shell.run_line_magic("todevice", "")
    d = r.to_dict()
    assert d["action"] == "placement"
    assert {row["name"]: row["kind"] for row in d["placement"]} == {
        "a": "array", "t": "tensor", "z": "tensor", "model": "module", "opt": "optimizer", "batch": "container"}
    assert d["devices"][0]["name"] == "cpu" and d["auto"]
    text = str(r)
    assert "todevice · placement" in text and "auto chooses" in text and "model" in text
    json.dumps(d)


def test_move_rebinds_names_and_moves_modules_in_place(shell):
    run(shell, SETUP)
    model = shell.user_ns["model"]
    r = shell.run_line_magic("todevice", "t model opt batch meta")
    ns = shell.user_ns
    assert ns["t"].is_meta and ns["batch"]["x"].is_meta and ns["batch"]["y"].dtype == torch.int64
    assert ns["model"] is model and all(p.is_meta for p in model.parameters())
    assert ns["z"].device.type == "cpu"  # z was not named
    d = r.to_dict()
    assert [m["status"] for m in d["moves"]] == ["moved"] * 4
    assert all({"name", "type", "from", "to", "nbytes", "seconds", "status"} <= set(m) for m in d["moves"])
    assert "t no longer shares memory with NumPy array a: changes to one will not show in the other" in d["warnings"]
    assert any(w.startswith("z still refers to the old CPU tensor") for w in d["warnings"])


def test_commas_and_spaces_both_separate_names(shell):
    run(shell, "import torch\nx = torch.ones(1)\ny = torch.ones(1)\nw = torch.ones(1)")
    shell.run_line_magic("todevice", "x,y w meta")
    assert all(shell.user_ns[n].is_meta for n in "xyw")


def test_numpy_array_becomes_a_tensor_with_its_twin(shell):
    run(shell, "import numpy as np\na = np.arange(3, dtype=np.int32)")
    r = shell.run_line_magic("todevice", "a cpu")
    assert isinstance(shell.user_ns["a"], torch.Tensor) and shell.user_ns["a"].dtype == torch.int32
    assert r.moves[0].dtype == "int32 -> torch.int32"


def test_dtype_option(shell):
    run(shell, "import torch\nx = torch.ones(2)")
    r = shell.run_line_magic("todevice", "--dtype bfloat16 x cpu")
    assert shell.user_ns["x"].dtype == torch.bfloat16 and r.dtype == "torch.bfloat16"


def test_auto_moves_to_the_device_auto_names(shell):
    run(shell, "import torch\nx = torch.ones(2)")
    r = shell.run_line_magic("todevice", "x auto")
    assert str(shell.user_ns["x"].device) == r.auto == r.target
    assert r.requested == "auto"


def test_failure_midway_leaves_the_namespace_unchanged(shell):
    run(shell, SETUP + "m = torch.empty(2, device='meta')\nlast = torch.ones(1)")
    before = dict(shell.user_ns)
    weights = [p.data_ptr() for p in shell.user_ns["model"].parameters()]
    with pytest.raises(UsageError, match=r"^nothing moved: m \(torch.Tensor\) cannot move to cpu: Cannot copy out of meta tensor.*devices here: cpu"):
        shell.run_line_magic("todevice", "--dtype float64 t model m last cpu")
    assert all(shell.user_ns[k] is v for k, v in before.items())
    assert [p.data_ptr() for p in shell.user_ns["model"].parameters()] == weights
    assert all(p.dtype == torch.float32 for p in shell.user_ns["model"].parameters())


@no_gpu
def test_absent_device_is_a_usage_error_not_a_traceback(shell, capsys):
    run(shell, "import torch\nx = torch.ones(1)")
    res = shell.run_cell("%todevice x cuda", store_history=False)
    assert isinstance(res.error_in_exec, UsageError)
    assert "device 'cuda' is not present on this machine" in str(res.error_in_exec)
    assert "devices here: cpu, meta" in str(res.error_in_exec)
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert shell.user_ns["x"].device.type == "cpu"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("x", r"give the names and then a device, e\.g\. %todevice x cuda"),
        ("nope meta", r"name 'nope' is not defined"),
        ("meta", r"name what to move to meta, e\.g\. %todevice x model meta, or move everything with %todevice --all meta"),
        ("x gpu", r"unknown device 'gpu'"),
        ("x cuda:99", r"'cuda:99' is not present"),
        ("--dtype flot32 x meta", r"unknown dtype 'flot32'"),
        ("x.T meta", r"'x.T' is not a variable name"),
        ("n meta", r"n is a Python int"),
        ("--all", r"--all needs a device"),
        ("--all x meta", r"--all takes only a device"),
        ("--dtype float32", r"name what to move and where"),
        ("x --dtype float16 meta", r"options go before the names"),
        ("--wat x meta", r"unrecognized arguments"),
    ],
)
def test_usage_errors(shell, line, message):
    run(shell, "import torch\nx = torch.ones(2)\nn = 3")
    before = dict(shell.user_ns)
    with pytest.raises(UsageError, match=message):
        shell.run_line_magic("todevice", line)
    assert all(shell.user_ns[k] is v for k, v in before.items())


def test_errors_are_one_line(shell, capsys):
    run(shell, "import torch\nx = torch.ones(2)\nm = torch.empty(1, device='meta')")
    for line in ["x", "nope cpu", "x gpu", "x m cpu", "--wat x cpu"]:
        shown_as_one_line_usage_error(shell, capsys, f"%todevice {line}")


@no_gpu
def test_pin_memory_needs_a_gpu(shell):
    run(shell, "import torch\nx = torch.ones(2)")
    with pytest.raises(UsageError, match="--pin-memory needs a CUDA or XPU device"):
        shell.run_line_magic("todevice", "--pin-memory x cpu")


def test_all_moves_torch_objects_and_leaves_numpy(shell):
    run(shell, SETUP)
    r = shell.run_line_magic("todevice", "--all meta")
    ns = shell.user_ns
    assert isinstance(ns["a"], np.ndarray)
    assert ns["t"].is_meta and ns["z"].is_meta and ns["t"] is ns["z"]
    assert all(p.is_meta for p in ns["model"].parameters())
    assert r.notes[0] == "NumPy arrays left as they are: a (name them to make tensors of them)"
    assert set(r.names) == {"t", "z", "model", "opt", "batch"}


def test_return_value_assigns_silently_and_semicolon_silences(shell, capsys):
    run(shell, "import torch\nx = torch.ones(2)")
    shell.run_cell("r = %todevice x meta", store_history=False)
    assert type(shell.user_ns["r"]).__name__ == "TodeviceReport" and shell.user_ns["x"].is_meta
    assert capsys.readouterr().out == ""
    shell.run_cell("%todevice;", store_history=True)
    assert "placement" not in capsys.readouterr().out
    shell.run_cell("%todevice", store_history=True)
    assert "todevice · placement" in capsys.readouterr().out


def test_text_and_html_panels(shell):
    run(shell, SETUP)
    r = shell.run_line_magic("todevice", "t meta")
    text = str(r)
    for part in ("todevice · t → meta", "── Moves", "── Warnings", "── Placement", "── Devices", "move with: %todevice t DEVICE"):
        assert part in text, part
    bundle = r._repr_mimebundle_()
    assert "<h4>todevice · t → meta</h4>" in bundle["text/html"]
    assert "t no longer shares memory with NumPy array a" in bundle["text/html"]


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def _controls(box):
    import ipywidgets

    items = list(_walk(box))
    return (next(w for w in items if isinstance(w, ipywidgets.Dropdown)), next(w for w in items if isinstance(w, ipywidgets.Button)), items)


def test_widget_move_button_moves_and_updates_the_panel(shell):
    pytest.importorskip("ipywidgets")
    from tensormagic.render.display import render_widget

    run(shell, "import torch\nx = torch.ones(2)\nm = torch.nn.Linear(2, 2)")
    box = render_widget(shell.run_line_magic("todevice", "x cpu"))
    picker, button, _ = _controls(box)
    assert picker.options[:2] == ("auto", "cpu") and picker.options[-1] == "meta"
    assert button.description == "Move" and picker.description == "move to"
    picker.value = "meta"
    button.click()
    assert shell.user_ns["x"].is_meta and shell.user_ns["m"].weight.device.type == "cpu"  # only x: the same move
    header = box.children[0].value
    assert "todevice · x → meta" in header and "moved x to meta" in header
    # the rebuilt panel has its own Move button: moving back from meta fails, shown in the widget
    picker, button, _ = _controls(box)
    picker.value = "cpu"
    button.click()
    import ipywidgets

    status = [w.value for w in _walk(box) if isinstance(w, ipywidgets.HTML) and "nothing moved" in w.value]
    assert status and "Cannot copy out of meta tensor" in status[0]
    assert shell.user_ns["x"].is_meta


def test_placement_widget_moves_everything_like_all(shell):
    pytest.importorskip("ipywidgets")
    from tensormagic.render.display import render_widget

    run(shell, "import numpy as np, torch\nx = torch.ones(2)\nm = torch.nn.Linear(2, 2)\na = np.ones(2)")
    box = render_widget(shell.run_line_magic("todevice", ""))
    picker, button, _ = _controls(box)
    assert picker.description == "move all to"
    picker.value = "meta"
    button.click()
    assert shell.user_ns["x"].is_meta and shell.user_ns["m"].weight.is_meta
    assert isinstance(shell.user_ns["a"], np.ndarray)


def test_help_documents_every_option(shell):
    doc = shell.find_line_magic("todevice").__doc__
    for option in ("--dtype", "--non-blocking", "--pin-memory", "--all", "NAMES DEVICE", "auto", "meta"):
        assert option in doc, option
