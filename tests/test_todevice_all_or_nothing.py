"""%todevice all or nothing, with every consequence named: lazy modules, cyclic containers,
tensors used as dict keys, and every name still pointing at a replaced tensor, at any depth.

Where nothing may change, the namespace (and the objects the move would have changed) is
compared before and after.
"""

from __future__ import annotations

import pytest
import torch

from tensormagic.engine.todevice import MoveError, move
from tests.conftest import run, shown_as_one_line_usage_error


def snapshot(ns: dict) -> dict:
    """What a failed move must leave exactly as it was: every name's object, and every module's
    parameter and buffer objects with their devices."""
    out = {}
    for name, obj in ns.items():
        if name.startswith("_"):
            continue
        out[name] = id(obj)
        if isinstance(obj, torch.nn.Module):
            for key, t in list(obj.named_parameters(remove_duplicate=False)) + list(obj.named_buffers(remove_duplicate=False)):
                out[f"{name}.{key}"] = (id(t), str(t.device), type(t).__name__)
    return out


# ---------------------------------------------------------------------------------------------
# lazy modules


LAZY = """
import torch
lazy = torch.nn.LazyLinear(3)
net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LazyBatchNorm1d())
x = torch.ones(2)
m = torch.empty(2, device="meta")
"""


def test_a_lazy_module_in_the_namespace_does_not_break_a_move(shell):
    run(shell, LAZY)
    before = snapshot(shell.user_ns)
    r = shell.run_line_magic("todevice", "x meta")
    assert shell.user_ns["x"].is_meta and r.error is None
    after = snapshot(shell.user_ns)
    assert {k for k in before if before[k] != after.get(k)} == {"x"}
    rows = {row.name: row for row in r.placement}
    assert "uninitialized" in rows["lazy"].note and "uninitialized" in rows["net"].note


def test_lazy_modules_move_and_stay_lazy(shell):
    run(shell, LAZY)
    r = shell.run_line_magic("todevice", "lazy net x meta")
    lazy, net = shell.user_ns["lazy"], shell.user_ns["net"]
    assert type(lazy.weight).__name__ == "UninitializedParameter" and lazy.weight.device.type == "meta"
    assert type(net[1].running_mean).__name__ == "UninitializedBuffer" and net[1].running_mean.is_meta
    assert net[0].weight.is_meta and [m.status for m in r.moves] == ["moved"] * 3
    out = lazy(torch.ones(4, 5, device="meta"))  # the first forward creates the weight on meta
    assert lazy.weight.shape == (3, 5) and lazy.weight.is_meta and out.is_meta


def test_a_failed_move_with_lazy_modules_changes_nothing(shell, capsys):
    run(shell, LAZY)
    before = snapshot(shell.user_ns)
    err = shown_as_one_line_usage_error(shell, capsys, "%todevice lazy net m cpu")
    assert "m (torch.Tensor) cannot move to cpu" in str(err)
    assert snapshot(shell.user_ns) == before


def test_a_report_that_fails_undoes_the_move():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LazyLinear(2))
    ns = {"model": model, "x": torch.ones(2)}
    before = snapshot(ns)

    def hook(phase: str, name: str) -> None:
        if phase == "report":
            raise RuntimeError("the report broke")

    with pytest.raises(MoveError, match="building the report failed .*the report broke.*every object was restored"):
        move(ns, ["model", "x"], "meta", hook=hook)
    assert snapshot(ns) == before and model[0].weight.device.type == "cpu"


# ---------------------------------------------------------------------------------------------
# cyclic and shared containers


def test_a_cyclic_list_moves_keeping_the_cycle(shell):
    run(shell, "import torch\nt = torch.ones(3)\ncyc = [t]\ncyc.append(cyc)\nd = {'t': t}\nd['self'] = d\nboth = [cyc, d]")
    shell.run_line_magic("todevice", "cyc d both meta")
    cyc, d, both = shell.user_ns["cyc"], shell.user_ns["d"], shell.user_ns["both"]
    assert cyc[1] is cyc and cyc[0].is_meta
    assert d["self"] is d and d["t"] is cyc[0]  # t was one tensor: it is one moved tensor
    assert both[0] is cyc and both[1] is d  # containers moved together stay the same containers
    assert shell.user_ns["t"].device.type == "cpu"  # t itself was not named


def test_shared_sub_containers_stay_shared():
    t = torch.ones(2)
    inner = [t]
    ns = {"outer": (inner, inner, {"again": inner}), "inner": inner}
    outer = move(ns, ["outer"], "meta").bindings["outer"]
    assert outer[0] is outer[1] is outer[2]["again"] and outer[0][0].is_meta
    assert ns["inner"] is inner and inner[0] is t  # the old list is untouched


def test_a_cycle_through_a_tuple_is_refused_and_nothing_changes(shell, capsys):
    run(shell, "import torch\nt = torch.ones(3)\nl = [t]\ntup = (l,)\nl.append(tup)")
    before = snapshot(shell.user_ns)
    err = shown_as_one_line_usage_error(shell, capsys, "%todevice tup meta")
    assert "tup[0][1] is a tuple inside a cycle of containers" in str(err)
    assert snapshot(shell.user_ns) == before and shell.user_ns["l"][0] is shell.user_ns["t"]
    shell.run_line_magic("todevice", "l meta")  # from the list the cycle can be rebuilt
    l = shell.user_ns["l"]
    assert l[1][0] is l and l[0].is_meta


def test_tensors_nested_deeper_than_the_placement_shows_are_refused_with_the_reason(shell, capsys):
    run(shell, "import torch\ndeep = [torch.ones(1)]\nfor _ in range(10):\n    deep = [deep]")
    before = snapshot(shell.user_ns)
    err = shown_as_one_line_usage_error(shell, capsys, "%todevice deep meta")
    assert "more than 8 levels of containers deep" in str(err)
    assert snapshot(shell.user_ns) == before


# ---------------------------------------------------------------------------------------------
# tensors used as dict keys


def test_tensors_used_as_dict_keys_stay_and_are_named(shell):
    run(shell, "import torch\nt = torch.ones(3)\nu = torch.zeros(2)\nd = {t: 'label', 'x': u}")
    r = shell.run_line_magic("todevice", "d meta")
    d = shell.user_ns["d"]
    assert d["x"].is_meta and d[shell.user_ns["t"]] == "label"  # the key is the same tensor: lookups work
    assert any(w.startswith("d.keys()[0] is a tensor used as a dict key: it stays on cpu") for w in r.warnings)
    row = {row.name: row for row in r.placement}["d"]
    assert row.mixed and row.device == "cpu (1), meta (1)"  # not "meta": the key is still on the CPU
    assert "used as dict keys" in row.note


def test_a_dict_with_only_tensor_keys_is_unchanged_and_says_why(shell):
    run(shell, "import torch\nt = torch.ones(3)\nk = {t: 1}")
    before = snapshot(shell.user_ns)
    r = shell.run_line_magic("todevice", "k meta")
    assert [m.status for m in r.moves] == ["unchanged"] and snapshot(shell.user_ns) == before
    assert any("k.keys()[0] is a tensor used as a dict key" in w for w in r.warnings)


# ---------------------------------------------------------------------------------------------
# every name still pointing at a replaced tensor, at any depth


STALE = """
import types, torch
fc = torch.nn.Linear(2, 2)
w = fc.weight
model = torch.nn.Sequential(fc)
holder = types.SimpleNamespace(w=fc.weight, inner={"b": fc.bias})
deep = [fc.weight]
for _ in range(12):
    deep = [deep]
s = {fc.bias}
k = {fc.weight: "weight"}
cfg = {"layers": [{"w": fc.weight}]}
"""


def test_every_name_still_pointing_at_an_old_tensor_is_warned(shell):
    run(shell, STALE)
    before = snapshot(shell.user_ns)
    r = shell.run_line_magic("todevice", "model meta")
    assert shell.user_ns["model"][0].weight.is_meta and shell.user_ns["w"].device.type == "cpu"
    stale = {w.split(" still refers")[0] for w in r.warnings if " still refers to the old CPU parameter" in w}
    assert stale == {"w", "holder.w", "holder.inner['b']", "deep" + "[0]" * 13, "s (a set element)", "k.keys()[0]", "cfg['layers'][0]['w']"}
    fixes = {w.split(" still refers")[0]: w.split("; ")[-1] for w in r.warnings if " still refers" in w}
    assert fixes["w"] == "to keep them together: %todevice model w meta"
    assert fixes["holder.w"] == "point it at the moved one (model.0.weight)"  # holder cannot move
    after = snapshot(shell.user_ns)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"model.0.weight", "model.0.bias", "fc.weight", "fc.bias"}  # fc is model[0]: in place; no name rebound


def test_names_that_follow_the_moved_parameter_are_not_warned(shell):
    """A move that keeps each Parameter object (new .data, like Module.to) leaves no stale name."""
    run(shell, STALE)
    r = shell.run_line_magic("todevice", "--dtype float64 model cpu")
    assert shell.user_ns["w"] is shell.user_ns["model"][0].weight and shell.user_ns["w"].dtype == torch.float64
    assert not any(" still refers" in w for w in r.warnings)
