"""``%tensorinfo model --input x``'s engine: every figure against a hand count or torch's own
FlopCounterMode, and nothing of the user's changed by the forward pass."""

from __future__ import annotations

import gc
import json
import random
import warnings
import weakref

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tensormagic.engine.layers import LayersError, inspect_layers, model_inputs
from tensormagic.engine.layers.flops import extra_formulas


def rows_by_name(report):
    return {r.name: r for r in report.layers}


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, 10))


def test_conv_linear_batchnorm_against_hand_counts():
    model = small_cnn()
    r = inspect_layers("m", model, (torch.randn(4, 3, 8, 8),))
    rows = rows_by_name(r)
    assert [row.name for row in r.layers] == ["m", "0", "1", "2", "3", "4"]
    assert [row.depth for row in r.layers] == [0, 1, 1, 1, 1, 1]
    conv, bn, relu, flat, fc = (rows[k] for k in "01234")
    assert conv.input_shape == [[4, 3, 8, 8]] and conv.output_shape == [[4, 16, 8, 8]]
    assert conv.parameters == 16 * 3 * 3 * 3 + 16
    # one multiply-add per output element per weight of its 3x3x3 window
    assert conv.macs == (4 * 16 * 8 * 8) * (3 * 3 * 3) and conv.flops == 2 * conv.macs
    assert bn.parameters == 2 * 16 and bn.output_shape == [[4, 16, 8, 8]]
    assert bn.macs == 0  # torch's FlopCounterMode has no formula for batch norm ...
    assert any("batch_norm" in op for op in r.totals.uncounted_ops)  # ... and the report says so
    assert relu.parameters == 0 and relu.macs == 0
    assert flat.output_shape == [[4, 1024]]
    assert fc.input_shape == [[4, 1024]] and fc.output_shape == [[4, 10]]
    assert fc.parameters == 1024 * 10 + 10 and fc.macs == 4 * 1024 * 10
    assert r.totals.macs == conv.macs + fc.macs == r.layers[0].macs_inclusive
    assert r.totals.parameters == sum(p.numel() for p in model.parameters())
    assert r.layers[0].input_shape == r.totals.input_shape == [[4, 3, 8, 8]]
    assert r.totals.output_shape == [[4, 10]]
    assert fc.activation_bytes == 4 * 10 * 4 and conv.activation_bytes == 4 * 16 * 8 * 8 * 4


def _flop_counter_total(fn, **kwargs):
    with FlopCounterMode(display=False, **kwargs) as counter:
        fn()
    return counter


@pytest.mark.parametrize("need_weights", [True, False], ids=["weights", "sdpa"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_multihead_attention_macs_are_flop_counter_modes(need_weights, training):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(32, 4, batch_first=True, dropout=0.0).train(training)
    q = torch.randn(2, 7, 32)
    r = inspect_layers("mha", mha, (q, q, q), {"need_weights": need_weights})
    counter = _flop_counter_total(lambda: mha(q, q, q, need_weights=need_weights), custom_mapping=extra_formulas())
    assert r.totals.flops == counter.get_total_flops() > 0
    assert r.layers[0].flops_inclusive == r.totals.flops and r.totals.macs * 2 == r.totals.flops
    # hand count: q, k, v and out projections (4 * L * E * E per batch) + the two attention bmms
    b, length, e = 2, 7, 32
    assert r.totals.macs == 4 * b * length * e * e + 2 * b * length * length * e
    assert [row.name for row in r.layers] == ["mha"]  # out_proj's weights are used directly ...
    assert "out_proj" in r.totals.not_called  # ... and the report names it


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_transformer_encoder_layer_macs_per_submodule_are_flop_counter_modes(training):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.1, batch_first=True).train(training)
    x = torch.randn(2, 7, 32)
    r = inspect_layers("enc", layer, (x,))
    state = torch.get_rng_state()
    counter = _flop_counter_total(lambda: layer(x), custom_mapping=extra_formulas())
    torch.set_rng_state(state)
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    rows = rows_by_name(r)
    assert r.totals.flops == counts["Global"] == counts["TransformerEncoderLayer"]
    for child in ("self_attn", "linear1", "linear2"):
        assert rows[child].flops_inclusive == counts[f"TransformerEncoderLayer.{child}"], child
    assert sum(row.macs for row in r.layers) == r.totals.macs  # own MACs partition the total
    b, length, e, f = 2, 7, 32, 64
    assert r.totals.macs == 4 * b * length * e * e + 2 * b * length * length * e + 2 * b * length * e * f


def test_cpu_attention_kernel_is_counted():
    """On the CPU, SDPA without dropout runs a kernel torch's registry lacks; it is counted as
    the math path (dropout) counts the same attention."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 2, batch_first=True)
    q = torch.randn(3, 5, 16)
    fast = inspect_layers("mha", mha.eval(), (q, q, q), {"need_weights": False}).totals
    math = inspect_layers("mha", mha.eval(), (q, q, q), {"need_weights": True}).totals
    assert fast.macs == math.macs
    plain = _flop_counter_total(lambda: mha(q, q, q, need_weights=False))
    assert plain.get_total_flops() < fast.flops  # torch alone would miss the attention


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.body = nn.Linear(8, 8)
        self.head = nn.Linear(8, 50, bias=False)
        self.head.weight = self.embed.weight  # tied

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(self.embed(ids))))


def test_tied_weights_are_counted_once():
    model = Tied()
    r = inspect_layers("lm", model, (torch.randint(0, 50, (2, 6)),))
    rows = rows_by_name(r)
    assert rows["embed"].parameters == rows["head"].parameters == 50 * 8
    assert rows["embed"].tied_parameters == rows["head"].tied_parameters == 50 * 8
    assert r.totals.parameters == 50 * 8 + 8 * 8 + 8 == sum(p.numel() for p in model.parameters())
    assert sum(row.parameters for row in r.layers) == r.totals.parameters + 50 * 8
    assert r.totals.tied_parameters == 50 * 8


def _state(model: nn.Module):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        torch.get_rng_state(),
        random.getstate(),
        np.random.get_state()[1].copy(),
    )


def _same_state(a, b) -> bool:
    return (
        a[0].keys() == b[0].keys()
        and all(torch.equal(a[0][k], b[0][k]) for k in a[0])
        and a[1] == b[1]
        and torch.equal(a[2], b[2])
        and a[3] == b[3]
        and np.array_equal(a[4], b[4])
    )


class Noisy(nn.Module):
    """BatchNorm in training mode, dropout, and a forward that draws from Python and NumPy."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(6)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = random.random() + float(np.random.rand())
        return self.fc(self.drop(self.bn(x))) + noise


def test_buffers_modes_and_every_rng_are_unchanged():
    model = Noisy().train()
    x = torch.randn(5, 6)
    before = _state(model)
    inspect_layers("model", model, (x,))
    assert _same_state(before, _state(model))
    model(x)  # the same forward without the probe changes every one of them
    after_plain = _state(model)
    assert not torch.equal(before[0]["bn.running_mean"], after_plain[0]["bn.running_mean"])
    assert int(after_plain[0]["bn.num_batches_tracked"]) == 1
    assert not torch.equal(before[2], after_plain[2]) and before[3] != after_plain[3]


def test_a_forward_that_raises_changes_nothing_either():
    """The BatchNorm and the dropout ran (stats updated, RNG drawn) before the last layer raised."""
    model = Noisy().train()
    model.fc = nn.Linear(4, 3)  # wrong input size: raises after bn and drop ran
    x = torch.randn(5, 6)
    before = _state(model)
    with pytest.raises(LayersError, match=r"^the forward raised in model\.fc \(Linear\), given \(5, 6\): RuntimeError: mat1 and mat2 shapes cannot be multiplied"):
        inspect_layers("model", model, (x,))
    assert _same_state(before, _state(model))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_hooks_grads_and_inputs_are_exactly_as_before():
    model = small_cnn()
    seen = []
    handle = model[2].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    def hooks_of(m):
        return [dict(getattr(m, k)) for k in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called")]

    hooks_before = [hooks_of(m) for m in model.modules()]
    version = x._version
    from torch.nn.modules import module as module_mod

    global_before = (dict(module_mod._global_forward_hooks), dict(module_mod._global_forward_pre_hooks))
    inspect_layers("m", model, (x,))
    assert seen == [torch.Size([4, 16, 8, 8])]  # the user's hook ran once, as in a plain forward
    assert hooks_before == [hooks_of(m) for m in model.modules()]
    assert global_before == (dict(module_mod._global_forward_hooks), dict(module_mod._global_forward_pre_hooks))
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())
    assert x.grad is None and x._version == version and x._backward_hooks is None
    handle.remove()


def test_the_forward_graph_is_freed_without_the_garbage_collector():
    model = small_cnn()
    outputs = []
    model[4].register_forward_hook(lambda m, i, o: outputs.append(weakref.ref(o)))
    gc.disable()
    try:
        inspect_layers("m", model, (torch.randn(4, 3, 8, 8),))
        assert outputs and outputs[0]() is None  # the output, and the graph it held, are gone
    finally:
        gc.enable()


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)) + x) * 2


def _saved_in_plain_forward(model: nn.Module, x: torch.Tensor) -> int:
    """Distinct storages a plain forward saves for backward, parameters, buffers and input aside."""
    skip = {t.untyped_storage()._cdata for t in [*model.parameters(), *model.buffers(), x]}
    seen: dict[int, int] = {}

    def pack(t):
        key = t.untyped_storage()._cdata
        if key not in skip:
            seen.setdefault(key, t.untyped_storage().nbytes())
        return t.detach()

    state = torch.get_rng_state()
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    del out
    model.load_state_dict(buffers)
    torch.set_rng_state(state)
    return sum(seen.values())


def test_saved_bytes_per_layer_sum_to_what_the_forward_saved():
    torch.manual_seed(0)
    model = nn.Sequential(Residual(), Residual(), nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * 6 * 6, 5))
    x = torch.randn(3, 4, 6, 6)
    r = inspect_layers("net", model, (x,))
    expected = _saved_in_plain_forward(model, x)
    assert expected > 0
    assert sum(row.saved_bytes for row in r.layers) == r.totals.saved_bytes == expected
    assert r.layers[0].saved_bytes_inclusive == expected
    residual = rows_by_name(r)["0"]
    assert residual.saved_bytes > 0  # its own add/relu/mul saved tensors, outside its children
    assert residual.saved_bytes_inclusive == residual.saved_bytes + sum(row.saved_bytes_inclusive for row in r.layers if row.parent == residual.index)


def test_nothing_is_saved_for_a_frozen_model():
    model = small_cnn().requires_grad_(False)
    r = inspect_layers("m", model, (torch.randn(4, 3, 8, 8),))
    assert r.totals.saved_bytes == 0 and not r.totals.grad_enabled


def test_peak_activation_memory_by_hand():
    """Linear -> ReLU -> Linear -> ReLU on 100 x 1000: at the last ReLU, the first ReLU's output
    (saved by the second Linear), the second Linear's output (the loop's variable) and the
    last output are alive: 3 x 400,000 B.  The weights' transposed views are not activations."""
    model = nn.Sequential(nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 1000), nn.ReLU())
    r = inspect_layers("m", model, (torch.randn(100, 1000),))
    assert r.totals.peak_activation_bytes == 3 * 100 * 1000 * 4


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return self.block(self.block(x)) * scale


def test_one_row_per_call_in_call_order_with_kwargs():
    model = Shared()
    args, kwargs = model_inputs(model, {"x": torch.randn(2, 4), "scale": 3.0})
    r = inspect_layers("s", model, args, kwargs)
    assert [(row.name, row.call, row.depth, row.parent) for row in r.layers] == [("s", 1, 0, None), ("block", 1, 1, 0), ("block", 2, 1, 0)]
    assert r.totals.macs == 2 * 2 * 4 * 4


class MakesNaN(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x - 10.0)  # NaN for every value below 10


class OwnNaN(nn.Module):
    """The NaN comes from the parent's own op, between two children."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x) / 0.0 * 0.0)


@pytest.mark.parametrize("model,origin", [
    (lambda: nn.Sequential(nn.Linear(3, 3), MakesNaN(), nn.Linear(3, 3), nn.ReLU()), "1"),
    (lambda: nn.Sequential(nn.Linear(3, 3), OwnNaN(), nn.ReLU()), "1"),
])
def test_the_row_where_nan_first_appears_is_flagged(model, origin):
    torch.manual_seed(0)
    r = inspect_layers("m", model(), (torch.randn(4, 3),))
    flagged = [row.name for row in r.layers if row.nonfinite_origin]
    assert flagged == [origin]
    after = [row for row in r.layers if row.index > int(origin) + 1 and row.depth == 1]
    assert after and all(row.stats.nan > 0 for row in after)  # later rows hold it too, unflagged


def test_nan_in_the_input_is_said_and_no_layer_is_blamed():
    x = torch.randn(2, 3)
    x[0, 0] = float("nan")
    r = inspect_layers("m", nn.Sequential(nn.Linear(3, 3), nn.ReLU()), (x,))
    assert not any(row.nonfinite_origin for row in r.layers)
    assert "the input already holds NaN/inf" in r.layer_notes


def test_dead_relus_show_as_zero_fraction():
    torch.manual_seed(0)
    lin = nn.Linear(4, 6)
    with torch.no_grad():
        lin.bias[:3] = -100.0  # three of six units never fire
    model, x = nn.Sequential(lin, nn.ReLU()), torch.randn(50, 4)
    r = inspect_layers("m", model, (x,))
    relu = rows_by_name(r)["1"]
    with torch.no_grad():
        expected = (model(x) == 0).sum().item() / 300
    assert relu.stats.exact and relu.stats.zero_fraction == expected >= 0.5
    assert relu.stats.min == 0.0 and rows_by_name(r)["0"].stats.zero_fraction == 0.0


def test_meta_model_gives_shapes_and_macs_without_values():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(512, 1024), nn.GELU(), nn.Linear(1024, 10))
    args, kwargs = model_inputs(model, sizes="16,512")
    r = inspect_layers("m", model, args, kwargs)
    assert r.totals.macs == 16 * 512 * 1024 + 16 * 1024 * 10
    assert r.totals.output_shape == [[16, 10]] and all(row.stats is None for row in r.layers)


def test_lazy_model_and_bad_inputs_are_one_line_errors():
    with pytest.raises(LayersError, match=r"^lazy is a lazy module .*run lazy\(x\) once yourself"):
        inspect_layers("lazy", nn.LazyLinear(3), (torch.randn(2, 4),))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script is deprecated
        scripted = torch.jit.script(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(LayersError, match=r"^scripted is a TorchScript module: its forward runs outside Python"):
        inspect_layers("scripted", scripted, (torch.ones(1, 2),))
    model = nn.Linear(3, 3)
    for kwargs, message in [
        ({"value": 3}, "--input needs a tensor, a tuple or list of arguments, or a dict of keyword arguments, not a int"),
        ({"value": {1: torch.ones(1)}}, "a dict input becomes keyword arguments: its keys must be strings, not 1"),
        ({"sizes": "8,a"}, "--input-size needs whole numbers such as 8,3,32,32, not '8,a'"),
        ({"sizes": ""}, "--input-size needs a shape, e.g. --input-size 8,3,32,32"),
    ]:
        with pytest.raises(LayersError) as info:
            model_inputs(model, **kwargs)
        assert str(info.value) == message


def test_input_size_draws_from_a_private_generator():
    model = small_cnn().double()
    state = torch.get_rng_state()
    (x,), _ = model_inputs(model, sizes="2x3x8x8")
    assert torch.equal(state, torch.get_rng_state())
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.float64
    (y,), _ = model_inputs(model, sizes="(2, 3, 8, 8)")
    assert torch.equal(x, y)


def test_to_dict_is_json_ready_with_layers_and_totals():
    r = inspect_layers("m", small_cnn(), (torch.randn(4, 3, 8, 8),))
    d = json.loads(json.dumps(r.to_dict()))
    assert len(d["layers"]) == 6 and d["layers"][1]["macs"] == (4 * 16 * 8 * 8) * 27
    assert set(d["layers"][1]) >= {"name", "type", "depth", "input_shape", "output_shape", "parameters", "trainable", "macs", "flops", "activation_bytes", "saved_bytes", "time_s", "stats", "nonfinite_origin"}
    assert set(d["layers"][3]["stats"]) >= {"min", "max", "mean", "std", "nan", "inf", "zero_fraction"}
    assert d["totals"]["parameters"] == 10730 and d["totals"]["macs"] == d["layers"][0]["macs_inclusive"]
    assert d["parameters"] == 10730  # the module report's own fields stay


def test_the_first_report_of_a_process_does_not_time_the_probes_own_set_up():
    """The probe's one-time set-up (about a second) is not the first layer's time."""
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from tensormagic.engine.layers import inspect_layers\n"
        "m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()); x = torch.ones(2, 4)\n"
        "first = inspect_layers('m', m, (x,)).totals.time_s\n"
        "second = inspect_layers('m', m, (x,)).totals.time_s\n"
        "print(first, second)\n"
    )
    first, second = map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    assert first < 10 * max(second, 0.02)
