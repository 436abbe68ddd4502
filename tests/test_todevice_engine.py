"""%todevice's engine in plain Python: devices, placement, moves, atomicity and warnings (CPU and meta)."""

from __future__ import annotations

import json
from collections import OrderedDict, namedtuple

import numpy as np
import pytest
import torch

from tensormagic.engine.todevice import devices
from tensormagic.engine.todevice import MoveError, movable_names, move, placement, placement_report

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the messages of a machine without CUDA")


def trained():
    """A model with gradients, an Adam optimizer with state, and their namespace."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    return {"model": model, "opt": opt}


# -- devices ----------------------------------------------------------------------------------


def test_devices_list_cpu_first_and_auto_is_present():
    found = devices.available_devices()
    assert found[0].name == "cpu" and found[0].float64
    assert str(devices.auto_device()) in [d.name for d in found]
    assert devices.device_names()[-1] == "meta"


@no_gpu
def test_auto_is_cpu_without_an_accelerator():
    if devices.auto_device().type in ("mps", "xpu"):
        pytest.skip("an MPS or XPU machine")
    assert devices.parse_device("auto") == torch.device("cpu")


@pytest.mark.parametrize(("text", "expected"), [("cpu", "cpu"), ("CPU", "cpu"), ("meta", "meta"), ("'meta'", "meta")])
def test_parse_present_devices(text, expected):
    assert str(devices.parse_device(text)) == expected


@no_gpu
@pytest.mark.parametrize("text", ["cuda", "cuda:0", "cuda:99"])
def test_absent_cuda_is_one_line_with_the_devices_here(text):
    with pytest.raises(devices.DeviceError) as info:
        devices.parse_device(text)
    message = str(info.value)
    assert "is not present on this machine" in message and "devices here: cpu" in message and "meta" in message
    assert "\n" not in message


def test_cuda_index_beyond_the_count_is_absent_on_any_machine():
    with pytest.raises(devices.DeviceError, match="'cuda:99' is not present"):
        devices.parse_device("cuda:99")


@pytest.mark.parametrize(("text", "message"), [("gpu", "unknown device 'gpu'"), ("cuda:x", "bad device"), ("cpu:3", "bad device"), ("mta", "did you mean meta")])
def test_bad_device_strings(text, message):
    with pytest.raises(devices.DeviceError, match=message):
        devices.parse_device(text)


@pytest.mark.parametrize(("text", "dtype"), [("float32", torch.float32), ("torch.float16", torch.float16), ("half", torch.float16), ("bfloat16", torch.bfloat16), ("int64", torch.int64)])
def test_parse_dtype(text, dtype):
    assert devices.parse_dtype(text) is dtype


def test_unknown_dtype_suggests():
    with pytest.raises(devices.DeviceError, match="unknown dtype 'flaot32'.*float32"):
        devices.parse_dtype("flaot32")


def test_what_devices_support():
    # torch.device objects need no hardware: this checks the rules, the CUDA suite the real thing
    assert "MPS does not support torch.float64" in devices.unsupported_dtype(torch.device("mps"), torch.float64)
    assert devices.unsupported_dtype(torch.device("mps"), torch.float32) is None
    assert devices.unsupported_dtype(torch.device("cuda", 0), torch.float64) is None
    assert "float32" in devices.float64_note(torch.device("cuda", 0), torch.float64)
    assert devices.float64_note(torch.device("cpu"), torch.float64) is None
    assert devices.float64_note(torch.device("cuda", 0), torch.float32) is None


# -- placement --------------------------------------------------------------------------------


def test_placement_rows_and_split_module():
    ns = trained()
    ns["a"] = np.ones((2, 3))
    ns["t"] = torch.zeros(4, dtype=torch.int32)
    ns["batch"] = {"x": torch.ones(2), "meta": torch.empty(3, device="meta"), "tag": "train"}
    ns["words"] = ["no", "tensors"]
    split = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    split[1].to("meta")
    ns["split"] = split
    rows, notes = placement(ns)
    by = {r.name: r for r in rows}
    assert set(by) == {"model", "opt", "a", "t", "batch", "split"}  # words holds no tensor
    assert (by["a"].kind, by["a"].device, by["a"].dtype, by["a"].nbytes) == ("array", "cpu", "float64", 48)
    assert (by["t"].kind, by["t"].dtype, by["t"].shape) == ("tensor", "torch.int32", [4])
    assert by["model"].kind == "module" and not by["model"].mixed
    assert by["model"].nbytes == (12 + 4 + 4 + 4 + 4 + 4) * 4 + 8  # params, running stats, num_batches_tracked
    assert by["opt"].kind == "optimizer" and by["opt"].device == "cpu" and by["opt"].nbytes > 0
    assert by["batch"].mixed and by["batch"].kind == "container"
    assert by["split"].mixed and "2 devices" in by["split"].note
    assert any(n.startswith("split is split across devices") for n in notes)
    assert placement_report(ns).summary() == "6 objects on cpu, meta; auto would choose " + str(devices.auto_device())
    assert any("Expected all tensors to be on the same device" in n for n in notes)


def test_placement_report_to_dict_is_json():
    ns = {"x": torch.ones(3)}
    d = placement_report(ns).to_dict()
    assert d["action"] == "placement" and d["moves"] == []
    assert d["placement"][0]["name"] == "x" and d["devices"][0]["name"] == "cpu"
    assert d["auto"] == str(devices.auto_device())
    assert "on_move" not in d
    json.dumps(d)


# -- moving -----------------------------------------------------------------------------------


def test_tensor_to_meta_rebinds_a_new_tensor_and_reports_the_move():
    t = torch.arange(6.0)
    ns = {"t": t}
    out = move(ns, ["t"], "meta")
    assert ns["t"] is t  # the engine never rebinds: the caller applies the bindings
    new = out.bindings["t"]
    assert new.device.type == "meta" and new.shape == (6,) and new.dtype == torch.float32
    row = out.report.to_dict()["moves"][0]
    assert {k: row[k] for k in ("name", "type", "from", "to", "nbytes", "status")} == {
        "name": "t", "type": "torch.Tensor", "from": "cpu", "to": "meta", "nbytes": 24, "status": "moved"}
    assert row["seconds"] >= 0
    assert out.report.to_dict()["placement"][0]["device"] == "meta"  # placement after the move


def test_already_there_is_unchanged_and_not_rebound():
    t = torch.ones(2)
    out = move({"t": t}, ["t"], "cpu")
    assert out.bindings == {} and out.report.moves[0].status == "unchanged"
    assert out.report.summary().startswith("nothing to move")


def test_leaf_stays_a_leaf_with_its_gradient_and_parameter_type():
    w = torch.ones(3, requires_grad=True)
    (w * 2).sum().backward()
    p = torch.nn.Parameter(torch.ones(2))
    y = w * 3
    out = move({"w": w, "p": p, "y": y}, ["w", "p", "y"], "meta")
    nw, np_, ny = out.bindings["w"], out.bindings["p"], out.bindings["y"]
    assert nw.is_leaf and nw.requires_grad and nw.grad is not None and nw.grad.device.type == "meta"
    assert isinstance(np_, torch.nn.Parameter) and np_.device.type == "meta"
    assert not ny.is_leaf and ny.grad_fn is not None  # a non-leaf keeps its history
    assert any("autograd history" in n for n in out.report.moves[2].notes)


def test_dtype_converts_named_tensors_and_only_floating_ones_inside():
    ns = {"t": torch.arange(4), "batch": {"x": torch.ones(2), "y": torch.tensor([1, 2])}, "model": torch.nn.BatchNorm1d(3)}
    out = move(ns, ["t", "batch", "model"], "cpu", dtype="float16")
    assert out.bindings["t"].dtype == torch.float16  # named directly: converted whatever its dtype
    assert out.bindings["batch"]["x"].dtype == torch.float16 and out.bindings["batch"]["y"].dtype == torch.int64
    bn = ns["model"]
    assert bn.weight.dtype == torch.float16 and bn.running_mean.dtype == torch.float16
    assert bn.num_batches_tracked.dtype == torch.int64
    assert out.report.moves[0].dtype == "torch.int64 -> torch.float16"


def test_numpy_array_to_cpu_becomes_a_tensor_sharing_memory():
    a = np.arange(4.0)
    out = move({"a": a}, ["a"], "cpu")
    t = out.bindings["a"]
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float64
    a[0] = 42.0
    assert t[0].item() == 42.0  # shares
    row = out.report.moves[0]
    assert (row.type, row.new_type, row.dtype, row.status) == ("numpy.ndarray", "torch.Tensor", "float64 -> torch.float64", "moved")
    assert any("sharing the array's memory" in n for n in row.notes)


def test_numpy_edge_cases_copy_and_say_why():
    ro = np.ones(3)
    ro.flags.writeable = False
    ns = {"ro": ro, "rev": np.arange(5)[::-1], "big": np.ones(2, dtype=">f4"), "s": np.float32(2.5)}
    out = move(ns, list(ns), "cpu")
    assert out.bindings["rev"].tolist() == [4, 3, 2, 1, 0]
    assert out.bindings["big"].dtype == torch.float32 and out.bindings["s"].dim() == 0
    notes = {m.name: " ".join(m.notes) for m in out.report.moves}
    assert "read-only" in notes["ro"] and "negative strides" in notes["rev"] and "byte order" in notes["big"]


def test_object_array_cannot_move():
    with pytest.raises(MoveError, match="nothing moved: o .*torch has no"):
        move({"o": np.array([object()])}, ["o"], "cpu")


def test_containers_move_element_wise_and_keep_their_types():
    Pair = namedtuple("Pair", "a b")
    shared = torch.ones(2)
    ns = {
        "d": OrderedDict(x=torch.ones(2), n=3, s="keep"),
        "l": [torch.zeros(1), [torch.ones(1), "deep"]],
        "tup": (shared, shared),
        "pair": Pair(torch.ones(1), 5),
    }
    out = move(ns, list(ns), "meta")
    b = out.bindings
    assert type(b["d"]) is OrderedDict and b["d"]["x"].is_meta and b["d"]["n"] == 3 and b["d"]["s"] == "keep"
    assert b["l"][0].is_meta and b["l"][1][0].is_meta and b["l"][1][1] == "deep"
    assert type(b["tup"]) is tuple and b["tup"][0] is b["tup"][1]  # one tensor twice stays one tensor
    assert type(b["pair"]) is Pair and b["pair"].a.is_meta and b["pair"].b == 5
    assert ns["d"]["x"].device.type == "cpu"  # the old container is not touched


def test_module_moves_in_place_and_optimizer_state_follows():
    ns = trained()
    model, opt = ns["model"], ns["opt"]
    out = move(ns, ["model", "opt"], "meta")
    assert out.bindings == {}  # both changed in place
    assert ns["model"] is model and all(p.is_meta for p in model.parameters())
    assert all(b.is_meta for b in model.buffers())
    params = list(model.parameters())
    assert [p for g in opt.param_groups for p in g["params"]] == params  # follows the new parameters
    state = opt.state[params[0]]
    assert state["exp_avg"].is_meta and state["exp_avg_sq"].is_meta
    assert state["step"].device.type == "cpu"  # Adam keeps its step counter on the CPU
    assert out.report.warnings == []
    assert [m.status for m in out.report.moves] == ["moved", "moved"]


def test_module_without_its_optimizer_warns():
    ns = trained()
    out = move(ns, ["model"], "meta")
    assert any(w.startswith("optimizer opt still updates the old model.0.weight") and "%todevice model opt meta" in w for w in out.report.warnings)


def test_bare_tensor_held_by_an_optimizer_warns_unless_named_with_it():
    w = torch.ones(2, requires_grad=True)
    ns = {"w": w, "opt": torch.optim.SGD([w], lr=0.1)}
    out = move(ns, ["w"], "meta")
    assert any("optimizer opt still updates the old w" in x for x in out.report.warnings)
    out = move(ns, ["w", "opt"], "meta")
    assert out.report.warnings == []
    assert ns["opt"].param_groups[0]["params"][0] is out.bindings["w"]


def test_module_tied_weights_stay_tied():
    emb = torch.nn.Embedding(5, 3)
    head = torch.nn.Linear(3, 5, bias=False)
    head.weight = emb.weight
    model = torch.nn.Sequential(emb, head)
    move({"model": model}, ["model"], "meta")
    assert model[0].weight is model[1].weight and model[0].weight.is_meta


def test_rnn_flat_weights_follow_the_move():
    rnn = torch.nn.GRU(2, 3)
    move({"rnn": rnn}, ["rnn"], "meta")
    assert all(w.is_meta for w in rnn._flat_weights)


# -- all or nothing ---------------------------------------------------------------------------


def _snapshot(ns):
    return {k: (v, [(id(p), p.device, p.dtype) for p in v.parameters()] if isinstance(v, torch.nn.Module) else None) for k, v in ns.items()}


def test_real_failure_midway_moves_nothing():
    ns = trained()
    ns["a"] = torch.ones(3)
    ns["m"] = torch.empty(3, device="meta")  # meta -> cpu fails for real
    ns["b"] = torch.ones(2)
    before = _snapshot(ns)
    state_before = {k: v for k, v in ns["opt"].state[ns["model"][0].weight].items()}
    with pytest.raises(MoveError) as info:
        move(ns, ["a", "model", "m", "b", "opt"], "cpu", dtype="float64")
    message = str(info.value)
    assert message.startswith("nothing moved: m (torch.Tensor) cannot move to cpu: Cannot copy out of meta tensor")
    assert "devices here: cpu" in message and "\n" not in message
    assert _snapshot(ns) == before
    assert ns["model"][0].weight.dtype == torch.float32
    assert ns["opt"].state[ns["model"][0].weight] == state_before
    statuses = {m.name: m.status for m in info.value.report.moves}
    assert statuses == {"a": "rolled back", "model": "rolled back", "m": "failed", "b": "not attempted", "opt": "not attempted"}


def test_injected_failure_midway_moves_nothing():
    ns = trained()
    ns["t"] = torch.ones(3)
    ns["batch"] = [torch.ones(1)]
    seen = []

    def hook(phase, name):
        seen.append((phase, name))
        if name == "batch":
            raise RuntimeError("injected failure")

    before = _snapshot(ns)
    with pytest.raises(MoveError, match=r"nothing moved: batch \(list\) cannot move to meta: RuntimeError: injected failure"):
        move(ns, ["t", "model", "batch", "opt"], "meta", hook=hook)
    assert seen == [("compute", "t"), ("compute", "model"), ("compute", "batch")]
    assert _snapshot(ns) == before and all(p.device.type == "cpu" for p in ns["model"].parameters())


def test_failure_while_installing_restores_what_was_installed():
    ns = trained()
    ns["other"] = torch.nn.Linear(2, 2)
    weight_data = ns["model"][0].weight.data_ptr()

    def hook(phase, name):
        if phase == "install" and name == "other":
            raise RuntimeError("injected install failure")

    before = _snapshot(ns)
    with pytest.raises(MoveError, match="installing other on cpu failed.*every object was restored"):
        move(ns, ["model", "other"], "cpu", dtype="float64", hook=hook)
    assert _snapshot(ns) == before
    assert ns["model"][0].weight.dtype == torch.float32 and ns["model"][0].weight.data_ptr() == weight_data
    assert ns["model"][0].weight.grad.dtype == torch.float32


def test_meta_module_back_to_cpu_fails_with_the_fix():
    model = torch.nn.Linear(2, 2).to("meta")
    with pytest.raises(MoveError, match=r"model.to_empty\(device=...\)"):
        move({"model": model}, ["model"], "cpu")
    assert model.weight.is_meta


@no_gpu
def test_pin_memory_without_an_accelerator_is_refused():
    with pytest.raises(MoveError, match="--pin-memory needs a CUDA or XPU device"):
        move({"t": torch.ones(1)}, ["t"], "cpu", pin_memory=True)


@pytest.mark.parametrize(
    ("ns", "names", "message"),
    [
        ({"weights": torch.ones(1)}, ["weight"], r"name 'weight' is not defined; did you mean weights\?"),
        ({"v": 3.5}, ["v"], "v is a Python float"),
        ({"v": ["a", 1]}, ["v"], "v is a list with no tensors, arrays or modules inside"),
        ({"m": torch.nn.Linear(1, 1)}, ["m.weight"], "'m.weight' is not a variable name"),
        ({}, [], "name what to move"),
    ],
)
def test_resolution_errors(ns, names, message):
    with pytest.raises(MoveError, match=message):
        move(ns, names, "meta")


# -- warnings ---------------------------------------------------------------------------------


def test_from_numpy_tensor_moved_loses_sharing():
    a = np.arange(3.0)
    t = torch.from_numpy(a)
    out = move({"a": a, "t": t}, ["t"], "meta")
    assert "t no longer shares memory with NumPy array a: changes to one will not show in the other" in out.report.warnings


def test_other_names_and_containers_still_refer_to_the_old_tensor():
    t = torch.ones(3)
    ns = {"t": t, "z": t, "batch": {"x": t}, "v": t[1:]}
    out = move(ns, ["t"], "meta")
    w = out.report.warnings
    assert any(x.startswith("z still refers to the old CPU tensor") and "%todevice t z meta" in x for x in w)
    assert any(x.startswith("batch['x'] still refers to the old CPU tensor") for x in w)
    assert "t no longer shares memory with tensor v: changes to one will not show in the other" in w


def test_same_object_named_twice_stays_one_object():
    t = torch.ones(3)
    out = move({"t": t, "z": t}, ["t", "z"], "meta")
    assert out.bindings["t"] is out.bindings["z"] and out.report.warnings == []


def test_views_moved_together_become_separate_copies():
    t = torch.ones(4)
    out = move({"t": t, "v": t[:2]}, ["t", "v"], "meta")
    assert any("shared memory before the move; now they are separate copies" in x for x in out.report.warnings)


def test_module_parameter_view_left_behind_warns():
    model = torch.nn.Linear(2, 2)
    ns = {"model": model, "wdata": model.weight.data, "w": model.weight}
    out = move(ns, ["model"], "cpu", dtype="float64")
    assert "model.weight no longer shares memory with tensor wdata: changes to one will not show in the other" in out.report.warnings
    assert not any(x.startswith("w ") for x in out.report.warnings)  # w is still model.weight itself


def test_module_held_by_a_container_left_in_place_is_not_a_false_alarm():
    model = torch.nn.Linear(2, 2)
    ns = {"model": model, "layers": [model], "w": model.weight}
    out = move(ns, ["model"], "meta")  # cpu -> meta replaces the Parameter objects, like Module.to
    assert ns["layers"][0].weight.is_meta
    assert not any(x.startswith("layers") for x in out.report.warnings)
    assert any(x.startswith("w still refers to the old CPU parameter") for x in out.report.warnings)


def test_numpy_array_moved_to_cpu_keeps_sharing_with_its_from_numpy_tensor():
    a = np.arange(3.0)
    out = move({"a": a, "t": torch.from_numpy(a)}, ["a"], "cpu")
    assert not any("no longer shares" in x for x in out.report.warnings)


# -- --all ------------------------------------------------------------------------------------


def test_movable_names_leave_numpy_alone():
    ns = {"a": np.ones(1), "t": torch.ones(1), "m": torch.nn.Linear(1, 1), "mix": [np.ones(1), torch.ones(1)], "n": 3, "_hidden": torch.ones(1)}
    chosen, arrays = movable_names(ns)
    assert chosen == ["t", "m"] and arrays == ["a", "mix"]
