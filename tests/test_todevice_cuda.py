"""%todevice on a real CUDA GPU: devices, moves, pinned memory, non-blocking copies, timing,
out-of-memory atomicity and several devices.  Skipped without a GPU, never faked.

Run on a GPU machine:  .venv/bin/python -m pytest -q tests/test_todevice_cuda.py
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from IPython.core.error import UsageError

from tensormagic.engine.todevice import MoveError, auto_device, available_devices, move, parse_device
from tests.conftest import run

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")


def current() -> str:
    return f"cuda:{torch.cuda.current_device()}"


def test_devices_show_each_gpu_with_name_and_memory():
    found = {d.name: d for d in available_devices()}
    for i in range(torch.cuda.device_count()):
        d = found[f"cuda:{i}"]
        assert torch.cuda.get_device_name(i) in d.label
        free, total = torch.cuda.mem_get_info(i)
        assert d.total_bytes == total and 0 < d.free_bytes <= d.total_bytes
        assert abs(d.free_bytes - free) < total * 0.05  # measured a moment apart
        assert d.float64
    assert str(auto_device()) == current()
    assert str(parse_device("cuda")) == current() and str(parse_device("auto")) == current()


def test_tensor_to_cuda_and_back_keeps_values(shell):
    run(shell, "import torch\nx = torch.randn(1000, 100)\nkeep = x.clone()")
    r = shell.run_line_magic("todevice", "x cuda")
    x = shell.user_ns["x"]
    assert str(x.device) == current() and r.target == current()
    assert r.moves[0].source == "cpu" and r.moves[0].status == "moved" and r.moves[0].nbytes == 400_000
    assert torch.equal(x.cpu(), shell.user_ns["keep"])
    shell.run_line_magic("todevice", "x cpu")
    assert shell.user_ns["x"].device.type == "cpu" and torch.equal(shell.user_ns["x"], shell.user_ns["keep"])


def test_placement_shows_gpu_memory_and_a_split_model(shell):
    run(shell, "import torch\nm = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2).cuda())")
    d = shell.run_line_magic("todevice", "").to_dict()
    gpu = next(dev for dev in d["devices"] if dev["name"] == "cuda:0")
    assert gpu["total_bytes"] > 0 and gpu["free_bytes"] is not None
    row = next(row for row in d["placement"] if row["name"] == "m")
    assert row["mixed"] and "cpu" in row["device"] and "cuda:0" in row["device"]
    assert "GiB" in str(shell.run_line_magic("todevice", ""))  # memory shown in the Devices table


def test_float64_array_bound_for_the_gpu_gets_a_float32_note(shell):
    run(shell, "import numpy as np\na = np.random.rand(10)\nb = np.random.rand(10)")
    r = shell.run_line_magic("todevice", "a cuda")
    assert shell.user_ns["a"].dtype == torch.float64 and shell.user_ns["a"].is_cuda  # CUDA has float64
    assert any("float32" in n and "float64" in n for n in r.moves[0].notes)
    assert r.moves[0].dtype == "float64 -> torch.float64"
    r = shell.run_line_magic("todevice", "--dtype float32 b cuda")
    assert shell.user_ns["b"].dtype == torch.float32
    assert not any("float64 on" in n for n in r.moves[0].notes)


def test_from_numpy_tensor_stops_sharing_after_the_move(shell):
    run(shell, "import numpy as np, torch\na = np.zeros(4)\nt = torch.from_numpy(a)\nz = t")
    r = shell.run_line_magic("todevice", "t cuda")
    assert "t no longer shares memory with NumPy array a: changes to one will not show in the other" in r.warnings
    assert any(w.startswith("z still refers to the old CPU tensor") for w in r.warnings)
    run(shell, "a[0] = 7.0")
    assert shell.user_ns["t"][0].item() == 0.0  # really separate now


def test_pin_memory_copies_through_page_locked_memory(shell):
    run(shell, "import torch\nx = torch.arange(1000.)\nh = torch.arange(10.)")
    shell.run_line_magic("todevice", "--pin-memory x cuda")
    assert shell.user_ns["x"].is_cuda and torch.equal(shell.user_ns["x"].cpu(), torch.arange(1000.0))
    r = shell.run_line_magic("todevice", "--pin-memory h cpu")  # a pinned CPU copy, ready for fast transfers
    assert shell.user_ns["h"].is_pinned() and r.moves[0].status == "moved"


def test_non_blocking_from_pinned_memory_and_the_pageable_note(shell):
    run(shell, "import torch\nx = torch.randn(1 << 20)\ny = x.clone()\nkeep = x.clone()")
    r = shell.run_line_magic("todevice", "--pin-memory --non-blocking x cuda")
    assert torch.equal(shell.user_ns["x"].cpu(), shell.user_ns["keep"])
    assert r.non_blocking and r.pin_memory
    assert not any("not asynchronous" in n for n in r.notes)
    assert any("time to queue" in n for n in r.notes)
    r = shell.run_line_magic("todevice", "--non-blocking y cuda")
    assert any("not asynchronous; add --pin-memory" in n for n in r.notes)


def test_non_blocking_copy_to_cpu_has_landed_before_rebinding():
    n = 1 << 26  # 256 MiB: an unsynchronised read would see zeros or stale bytes
    src = torch.randn(n, device="cuda")
    expected, last = src[:: 1 << 16].cpu(), src[-1].item()
    out = move({"x": src}, ["x"], "cpu", non_blocking=True)
    x = out.bindings["x"]
    assert x.device.type == "cpu"
    assert x[-1].item() == last and torch.equal(x[:: 1 << 16], expected)


def test_timing_is_measured_with_the_device_synchronised():
    ns = {"x": torch.randn(1 << 26)}  # 256 MiB
    out = move(ns, ["x"], "cuda")
    row = out.report.moves[0]
    assert row.seconds is not None and row.seconds > row.nbytes / 2e12  # slower than 2 TB/s: the copy was waited for
    assert out.report.seconds >= row.seconds
    assert row.seconds < 60


def test_module_and_optimizer_to_cuda_then_train(shell):
    run(
        shell,
        "import torch\nmodel = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8))\n"
        "opt = torch.optim.Adam(model.parameters())\nmodel(torch.randn(3, 4)).sum().backward()\nopt.step()\n"
        "ids = [id(p) for p in model.parameters()]",
    )
    r = shell.run_line_magic("todevice", "model opt cuda")
    ns = shell.user_ns
    model, opt = ns["model"], ns["opt"]
    assert [id(p) for p in model.parameters()] == ns["ids"]  # moved in place, like Module.to
    assert all(p.is_cuda for p in model.parameters()) and all(b.is_cuda for b in model.buffers())
    state = opt.state[next(model.parameters())]
    assert state["exp_avg"].is_cuda and state["step"].device.type == "cpu"
    assert r.warnings == []
    run(shell, "loss = model(torch.randn(3, 4, device='cuda')).sum()\nloss.backward()\nopt.step()")


def test_model_without_its_optimizer_warns_and_step_fails(shell):
    run(
        shell,
        "import torch\nmodel = torch.nn.Linear(4, 2)\nopt = torch.optim.Adam(model.parameters())\n"
        "model(torch.randn(3, 4)).sum().backward()\nopt.step()",
    )
    r = shell.run_line_magic("todevice", "model cuda")
    assert any(w.startswith("opt's state is still on cpu") and "%todevice model opt" in w for w in r.warnings)
    with pytest.raises(RuntimeError):
        run(shell, "model(torch.randn(3, 4, device='cuda')).sum().backward()\nopt.step()")


def test_out_of_memory_moves_nothing_and_frees_partial_copies():
    free, _ = torch.cuda.mem_get_info()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    huge = torch.zeros(1).expand(free // 4 * 2)  # no memory on the CPU, twice the GPU's free memory once copied
    small = torch.ones(1 << 20)
    ns = {"small": small, "huge": huge}
    with pytest.raises(MoveError, match=r"nothing moved: huge \(torch.Tensor\) cannot move to cuda:\d: out of memory on cuda:\d") as info:
        move(ns, ["small", "huge"], "cuda")
    assert ns["small"] is small and small.device.type == "cpu"
    assert {m.name: m.status for m in info.value.report.moves} == {"small": "rolled back", "huge": "failed"}
    del info
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before  # small's GPU copy was freed


def test_meta_to_cuda_fails_and_absent_index_is_a_usage_error(shell):
    run(shell, "import torch\nm = torch.empty(2, device='meta')\nx = torch.ones(1)")
    with pytest.raises(UsageError, match="Cannot copy out of meta tensor"):
        shell.run_line_magic("todevice", "x m cuda")
    assert shell.user_ns["x"].device.type == "cpu"
    n = torch.cuda.device_count()
    with pytest.raises(UsageError, match=rf"'cuda:{n}' is not present on this machine: it has {n} CUDA device"):
        shell.run_line_magic("todevice", f"x cuda:{n}")


@two_gpus
def test_several_devices(shell):
    run(shell, "import torch\nx = torch.randn(1000, device='cuda:0')\nkeep = x.cpu()")
    r = shell.run_line_magic("todevice", "x cuda:1")
    assert str(shell.user_ns["x"].device) == "cuda:1" and r.moves[0].source == "cuda:0"
    assert torch.equal(shell.user_ns["x"].cpu(), shell.user_ns["keep"])
    assert r.moves[0].seconds is not None and r.moves[0].seconds > 0
    run(shell, "m = torch.nn.Sequential(torch.nn.Linear(2, 2).to('cuda:0'), torch.nn.Linear(2, 2).to('cuda:1'))")
    d = shell.run_line_magic("todevice", "").to_dict()
    assert next(row for row in d["placement"] if row["name"] == "m")["mixed"]
    assert {dev["name"] for dev in d["devices"]} >= {"cuda:0", "cuda:1"}
    shell.run_line_magic("todevice", "m cuda:1")
    assert {str(p.device) for p in shell.user_ns["m"].parameters()} == {"cuda:1"}


def test_numpy_array_to_gpu_shares_nothing_and_cpu_again_is_a_copy():
    a = np.arange(5.0)
    out = move({"a": a}, ["a"], "cuda", dtype="float32")
    t = out.bindings["a"]
    assert t.is_cuda and t.dtype == torch.float32 and t.cpu().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
