"""The panel of ``%tensorinfo model --input x``: a Layers tab before the module panel's tabs.

The Layers tab holds the totals, a table of every module call (indented by depth, with bars for
MACs and memory), a table of what each call returned (bytes and statistics; where NaN/inf first
appears is flagged)
and notes that say how each figure was measured.  Text, HTML and widget views render the same
panel, so they show the same facts.
"""

from __future__ import annotations

from collections.abc import Callable

from tensormagic.engine.layers import LayerRow, LayersInfo, LayerTotals
from tensormagic.render.document import KeyValues, Level, Note, Panel, Section, Table
from tensormagic.render.format import fmt_bytes, fmt_number, fmt_shape, truncate
from tensormagic.render.registry import builds
from tensormagic.render.tensorinfo_panel import module_panel
from tensormagic.render.text import bar

#: Module calls shown at most in the tables (all of them are in ``to_dict()["layers"]``).
MAX_LAYER_ROWS = 300
BAR_WIDTH = 8
#: One level of nesting in the layer column (no-break spaces: HTML keeps them).
INDENT = "\u00a0\u00a0"


def shapes(value: list[list[int] | None]) -> str:
    """``(8, 3, 32, 32)``; several tensors joined by commas; ``-`` for none."""
    if not value:
        return "-"
    shown = ", ".join("?" if s is None else fmt_shape(s) for s in value[:3])
    return shown + (f" +{len(value) - 3}" if len(value) > 3 else "")


def layer_label(row: LayerRow) -> str:
    """The row's name indented by its depth, ``(call 2)`` for a module's later calls."""
    name = truncate(row.name, 50) + (f" (call {row.call})" if row.call > 1 else "")
    return INDENT * row.depth + name


def seconds(s: float) -> str:
    """``850 µs``, ``12.3 ms`` or ``1.234 s``."""
    if s < 1e-3:
        return f"{s * 1e6:,.0f} µs"
    if s < 1:
        return f"{s * 1e3:,.1f} ms"
    return f"{s:,.3f} s"


def _cost(own: int, inclusive: int, has_children: bool, show: Callable[[int], str] = fmt_number) -> str:
    """A leaf shows its own count; a row with children the sum over it (``Σ``)."""
    if not has_children:
        return show(own) if own else "-"
    text = f"Σ {show(inclusive)}" if inclusive else "-"
    return text + (f" (own {show(own)})" if own and inclusive != own else "")


def _size(n: int) -> str:
    return fmt_bytes(n, exact=False)


def _headline(info: LayersInfo, t: LayerTotals) -> tuple[str, Level]:
    parts = [
        f"{truncate(info.name, 40)}: {info.type.rsplit('.', 1)[-1]}",
        f"{t.parameters:,} parameters" + (f" ({t.tied_parameters:,} tied, counted once)" if t.tied_parameters else ""),
        f"{t.macs:,} MACs",
        f"peak activations {_size(t.peak_activation_bytes)}",
        f"saved for backward {_size(t.saved_bytes)}",
        f"{shapes(t.input_shape)} → {shapes(t.output_shape)}",
    ]
    first = next((r for r in info.layers if r.nonfinite_origin), None)
    if first is not None:
        parts.append(f"NaN/inf first in {truncate(first.name, 40)}!")
        return " · ".join(parts), "error"
    return " · ".join(parts), "info"


def _totals(t: LayerTotals) -> KeyValues:
    return KeyValues(
        [
            ("parameters", f"{t.parameters:,} ({t.trainable_parameters:,} trainable), {fmt_bytes(t.parameter_bytes)}" + (f"; {t.tied_parameters:,} tied, counted once" if t.tied_parameters else "")),
            ("MACs", fmt_number(t.macs)),
            ("FLOPs", fmt_number(t.flops)),
            ("peak activation memory", fmt_bytes(t.peak_activation_bytes)),
            ("saved for backward", fmt_bytes(t.saved_bytes)),
            ("output", f"{shapes(t.output_shape)}, {fmt_bytes(t.output_bytes)}"),
            ("forward time", seconds(t.time_s)),
            ("module calls", fmt_number(t.calls)),
        ]
    )


def _cost_table(info: LayersInfo, t: LayerTotals) -> Table:
    rows = info.layers[:MAX_LAYER_ROWS]
    parents = {r.parent for r in info.layers if r.parent is not None}
    memory_is_saved = t.saved_bytes > 0
    top_macs = max((r.macs for r in rows), default=0)
    top_mem = max(((r.saved_bytes if memory_is_saved else r.activation_bytes) for r in rows), default=0)
    body = []
    for r in rows:
        kids = r.index in parents
        mem = r.saved_bytes if memory_is_saved else r.activation_bytes
        body.append(
            [
                layer_label(r),
                r.type,
                shapes(r.input_shape),
                shapes(r.output_shape),
                fmt_number(r.parameters) if r.parameters else "-",
                _cost(r.macs, r.macs_inclusive, kids),
                bar(r.macs, top_macs, BAR_WIDTH) or "",
                _cost(r.saved_bytes, r.saved_bytes_inclusive, kids, _size),
                bar(mem, top_mem, BAR_WIDTH) or "",
                seconds(r.time_s),
            ]
        )
    headers = ["layer", "type", "input", "output", "params", "MACs", "MACs bar", "saved", "saved bar" if memory_is_saved else "output bar", "time"]
    return Table(headers, body, caption="one row per module call, in call order (Σ: the row and everything inside it)", total_rows=len(info.layers), bars=(6, 8), wide=True)


def _stats_table(info: LayersInfo) -> Table:
    body = []
    for r in info.layers[:MAX_LAYER_ROWS]:
        s = r.stats
        size = _size(r.activation_bytes)
        if s is None:
            body.append([layer_label(r), size, "-", "-", "-", "-", "-", "-", ""])
            continue
        approx = "" if s.exact else "≈ "
        zeros = "-" if s.zero_fraction is None else f"{approx}{s.zero_fraction:.1%}"
        bad = "-" if not (s.nan or s.inf) else f"{approx}{s.nan:,} NaN, {s.inf:,} inf"
        flag = "⚠ NaN/inf first appears here" if r.nonfinite_origin else ""
        body.append([layer_label(r), size, fmt_number(s.min), fmt_number(s.max), fmt_number(s.mean), fmt_number(s.std), zeros, bad, flag])
    return Table(["layer", "bytes", "min", "max", "mean", "std", "zeros", "NaN/inf", "flag"], body, caption="what each call returned (its output tensors)", total_rows=len(info.layers), wide=True)


def _notes(info: LayersInfo, t: LayerTotals) -> list[Note]:
    notes = []
    first = next((r for r in info.layers if r.nonfinite_origin), None)
    if first is not None:
        notes.append(Note(f"NaN/inf first appears in the output of {first.name} ({first.type}): its inputs were finite", "error"))
    for n in info.layer_notes:
        notes.append(Note(n, "warning" if "NaN" in n or "in place" in n else "info"))
    uncounted = ", ".join(f"{op} ×{n:,}" for op, n in sorted(t.uncounted_ops.items(), key=lambda kv: -kv[1])[:8])
    notes.append(Note("MACs and FLOPs as torch.utils.flop_counter.FlopCounterMode counts them (FLOPs = 2 × MACs): matrix products, convolutions and attention" + (f"; ops it has no formula for count 0: {uncounted}" if uncounted else "")))
    if t.grad_enabled:
        notes.append(Note("memory: peak activation memory is the most bytes of tensors the forward created that were alive at once (parameters, buffers and inputs excluded); saved for backward is what autograd keeps until backward, each storage charged once, to the call that saved it first"))
    else:
        notes.append(Note("nothing is saved for backward: no parameter or input requires grad (peak activation memory is that of inference)"))
    notes.append(Note(f"activation statistics are exact up to {t.stats_budget:,} elements per call, estimated from a fixed-seed sample above (marked ≈); time is each call's wall time in this one pass, children included, the probe's own work excluded"))
    if t.not_called:
        shown = ", ".join(truncate(n, 40) for n in t.not_called[:8]) + (" ..." if len(t.not_called) > 8 else "")
        notes.append(Note(f"{len(t.not_called)} submodule{'s' if len(t.not_called) > 1 else ''} not called by this forward (a parent may use their parameters directly, as nn.MultiheadAttention does with out_proj): {shown}"))
    return notes


def layers_section(info: LayersInfo) -> Section:
    """The Layers tab."""
    t = info.totals
    if t is None:
        return Section("Layers", [Note("no forward pass: give --input EXPR or --input-size 8,3,32,32")])
    return Section("Layers", [_totals(t), _cost_table(info, t), _stats_table(info), *_notes(info, t)])


@builds(LayersInfo)
def layers_panel(info: LayersInfo) -> Panel:
    """The module panel with the Layers tab first, and a headline of the totals."""
    panel = module_panel(info, layers_hint=False)
    if info.totals is not None:
        panel.headline, panel.headline_level = _headline(info, info.totals)
    panel.sections.insert(0, layers_section(info))
    return panel


__all__ = ["layer_label", "layers_panel", "layers_section", "shapes"]
