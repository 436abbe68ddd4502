"""``%tensorinfo model --input x``: a model layer by layer, from one forward pass.

Pure (torch and NumPy only).  Modules, one job each:

- :mod:`.inputs`: the forward's inputs (the user's value, copied; or random tensors of a size).
- :mod:`.guard`: the model's state (buffers, modes, random generators) put back exactly.
- :mod:`.probe`: the pass itself: module hooks, one row per call.
- :mod:`.flops`: FLOPs as torch's FlopCounterMode counts them.
- :mod:`.memory`: activations alive at once, and bytes saved for backward per call.
- :mod:`.activations`: statistics of each call's outputs.
- :mod:`.report`: the report dataclasses (:class:`LayersInfo`, :class:`LayerRow`, :class:`LayerTotals`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import torch

from tensormagic.engine.layers.activations import DEFAULT_LAYER_BUDGET
from tensormagic.engine.layers.guard import ModelStateGuard
from tensormagic.engine.layers.inputs import (
    InputError,
    parse_sizes,
    private_copies,
    random_inputs,
    split_input,
)
from tensormagic.engine.layers.probe import ForwardError, Probe
from tensormagic.engine.layers.report import ActivationStats, LayerRow, LayersInfo, LayerTotals
from tensormagic.engine.naming import is_uninitialized
from tensormagic.engine.tensorinfo import ModuleInfo, inspect_module


class LayersError(ValueError):
    """The model cannot be probed with this input; the message is one line."""


def _unique_parameters(model: torch.nn.Module) -> tuple[int, int, int, int]:
    """Parameters, trainable ones and their bytes, each parameter once; and how many are tied."""
    seen: dict[int, int] = {}
    total = trainable = nbytes = tied = 0
    for m in model.modules():
        for p in m._parameters.values():
            if p is None or is_uninitialized(p):
                continue
            seen[id(p)] = seen.get(id(p), 0) + 1
            if seen[id(p)] == 2:
                tied += p.numel()
            if seen[id(p)] > 1:
                continue
            total += p.numel()
            trainable += p.numel() if p.requires_grad else 0
            nbytes += p.numel() * p.element_size()
    return total, trainable, nbytes, tied


def _inclusive_saved(rows: list[LayerRow]) -> None:
    for row in rows:
        row.saved_bytes_inclusive = row.saved_bytes
    for row in reversed(rows):  # children come after their parent: fold them upwards
        if row.parent is not None:
            rows[row.parent].saved_bytes_inclusive += row.saved_bytes_inclusive


def model_inputs(model: torch.nn.Module, value: Any = None, sizes: str | None = None) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The forward's arguments from ``--input`` (a value) or ``--input-size`` (a text); a
    :class:`LayersError` (one line) when they cannot be made."""
    try:
        if sizes is not None:
            return random_inputs(model, parse_sizes(sizes)), {}
        return split_input(value)
    except InputError as exc:
        raise LayersError(str(exc)) from None


@functools.cache
def _warm_up() -> None:
    """Run the probe once on a tiny module of the magic's own (no parameters, no random numbers),
    so that its one-time set-up (imports, the FLOP counter's tables, the first dispatch modes:
    about a second) is not timed as the user's first layer."""
    tiny = torch.nn.Sequential(torch.nn.ReLU())
    try:
        with ModelStateGuard(tiny):
            Probe(tiny, "warm-up", 16).run((torch.zeros(1, 2),), {})
    except Exception:  # noqa: BLE001 - only a warm-up: the real probe reports its own errors
        pass


def inspect_layers(name: str, model: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None, budget: int = DEFAULT_LAYER_BUDGET, base: ModuleInfo | None = None) -> LayersInfo:
    """The module report of ``model`` plus one row per module call of ``model(*args, **kwargs)``.

    Nothing of the user's changes: the inputs are copies, the model's buffers, modes and the
    random generators are restored, every hook and mode is removed and the graph is freed.  A
    forward that writes parameters in place is the one exception (undoing it would need a copy of
    every parameter): they keep the new values, and the notes name them.  Raises
    :class:`LayersError` (one line) for a lazy model, a TorchScript module or a forward that raises.
    """
    lazy = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if is_uninitialized(p)]
    if lazy:
        raise LayersError(f"{name} is a lazy module ({lazy[0]} is uninitialized): a forward would create its parameters; run {name}(x) once yourself, then %tensorinfo {name} --input x")
    scripted = [n or name for n, m in model.named_modules() if isinstance(m, torch.jit.ScriptModule)]
    if scripted:
        raise LayersError(f"{scripted[0]} is a TorchScript module: its forward runs outside Python, where module hooks cannot see its layers; give the Python module instead")
    base = base if base is not None else inspect_module(name, model)
    _warm_up()
    args, kw, _ = private_copies(tuple(args), dict(kwargs or {}))
    probe = Probe(model, name, budget)
    with ModelStateGuard(model) as guard:
        try:
            result = probe.run(args, kw)
        except ForwardError as exc:
            raise LayersError(str(exc)) from None
        finally:
            del args, kw
    rows = result.rows
    _inclusive_saved(rows)
    params, trainable, pbytes, tied = _unique_parameters(model)
    called = {r.name for r in rows}
    not_called = [n for n, _ in model.named_modules() if n and n not in called]
    totals = LayerTotals(
        parameters=params, trainable_parameters=trainable, parameter_bytes=pbytes, tied_parameters=tied,
        macs=result.flops // 2, flops=result.flops, peak_activation_bytes=result.peak_activation_bytes,
        saved_bytes=result.saved_bytes, output_bytes=result.output_bytes, time_s=result.time_s, calls=len(rows),
        input_shape=rows[0].input_shape if rows else [], output_shape=result.output_shape, uncounted_ops=result.uncounted_ops, not_called=not_called,
        stats_budget=budget, grad_enabled=result.grad_enabled,
    )
    notes = list(result.notes)
    if result.input_nonfinite:
        notes.append("the input already holds NaN/inf")
    if guard.restored_buffers:
        shown = ", ".join(guard.restored_buffers[:4]) + (" ..." if len(guard.restored_buffers) > 4 else "")
        notes.append(f"the forward updated {len(guard.restored_buffers)} buffer{'s' if len(guard.restored_buffers) > 1 else ''} ({shown}); restored to their values before the call")
    if guard.changed_parameters:
        notes.append(f"the forward wrote parameters in place ({', '.join(guard.changed_parameters[:4])}): they keep the new values")
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(ModuleInfo)}
    return LayersInfo(**fields, layers=rows, totals=totals, layer_notes=notes)


__all__ = [
    "DEFAULT_LAYER_BUDGET",
    "ActivationStats",
    "LayerRow",
    "LayerTotals",
    "LayersError",
    "LayersInfo",
    "inspect_layers",
    "model_inputs",
]
