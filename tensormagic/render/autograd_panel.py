"""The panel of ``%%autograd``'s report: Gradients | Graph | Cost | Health (| Jacobian | Check)."""

from __future__ import annotations

import math
from typing import Any

from tensormagic.engine.autograd.graph import GraphInfo, GraphNode
from tensormagic.engine.autograd.report import AutogradReport, GradientRow
from tensormagic.render.charts import gradient_flow
from tensormagic.render.document import (
    Bars,
    Block,
    KeyValues,
    Level,
    Note,
    Panel,
    Picture,
    Preformatted,
    Section,
    Table,
)
from tensormagic.render.format import MAX_ROWS, fmt_bytes, fmt_number, fmt_shape, truncate
from tensormagic.render.graph_drawing import draw_graph
from tensormagic.render.registry import builds

#: Rows shown at most in a table; graph lines at most in the text graph.
MAX_GRAPH_LINES = 120
MAX_BARS = 60
MAX_CHANGES = 8

#: How to ask for what the magic left out, by the engine option that asks for it.
ASK = {
    "jacobian_budget": "raise the budget with --jacobian-budget N",
    "extra_seconds": "allow it with --extra-time SECONDS",
    "locate_nan": "run the cell with --nan to find it during the cell's own backward",
}


def wrt_label(row: GradientRow) -> str:
    """``w`` or, for a tensor with several names, ``w (= w2, p)``."""
    return row.wrt if not row.aliases else f"{row.wrt} (= {', '.join(row.aliases[:3])}{'…' if len(row.aliases) > 3 else ''})"


def fmt_value(value: Any, limit: int = 60) -> str:
    """A gradient as a learner reads it: ``3.0``, ``[1.0, 2.0]`` or its summary."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        return truncate(str(value.get("summary", value)), limit)
    if isinstance(value, float):
        return fmt_number(value)
    if isinstance(value, list):
        return truncate(str(_round(value)), limit)
    return truncate(str(value), limit)


def _round(value: Any) -> Any:
    if isinstance(value, list):
        return [_round(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else value
    return value


def _d(of: str, wrt: str) -> str:
    return f"d{of}/d{wrt}" if of.isidentifier() else f"∂/∂{wrt}"


def _headline(report: AutogradReport) -> tuple[str, Level]:
    if report.message:
        return report.message, "warning"
    parts = []
    for o in report.outputs[:3]:
        parts.append(f"{truncate(o.name, 30)} = {fmt_number(o.value)}" if o.value is not None else f"{truncate(o.name, 30)} {fmt_shape(o.shape)}")
    level: Level = "ok"
    statuses = [row.status for row in report.gradients]
    if "non_finite" in statuses:
        level = "error"
    elif any(s in ("unused", "detached", "integer_dtype") for s in statuses) or any(h.flag for h in report.health):
        level = "warning"
    small = [row for row in report.gradients if not isinstance(row.grad, dict) and len(fmt_value(row.grad, 40)) < 40]
    if len(report.gradients) <= 6 and len(small) == len(report.gradients):
        for row in report.gradients:
            if row.status in ("ok", "non_leaf"):
                parts.append(f"{_d(row.of, row.wrt)} = {fmt_value(row.grad, 24)}")
            else:
                parts.append(f"{row.wrt}: {row.status}")
        return " · ".join(parts), level
    # many tensors (a model): counts per status, then the flags
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s] = counts.get(s, 0) + 1
    parts += [f"{n:,} {s}" for s, n in sorted(counts.items(), key=lambda kv: (kv[0] != "ok", kv[0]))]
    flags: dict[str, int] = {}
    for h in report.health:
        if h.flag:
            flags[h.flag] = flags.get(h.flag, 0) + 1
    parts += [f"{flag} gradients: {n:,} parameter{'s' if n > 1 else ''}" for flag, n in flags.items()]
    return " · ".join(parts), level


def _gradients(report: AutogradReport) -> Section:
    if report.message:
        return Section("Gradients", [Note(report.message, "warning")])
    rows = []
    for g in report.gradients[:MAX_ROWS]:
        rows.append([truncate(wrt_label(g), 40), truncate(g.of, 30), str(g.status), fmt_value(g.grad, 40), fmt_shape(g.shape), fmt_number(g.norm), g.label if g.label != "gradient" and g.grad is not None else ""])
    blocks: list[Block] = []
    outs = []
    for o in report.outputs:
        chosen = o.source + (f" at line {o.call_line}" if o.call_line else (f" (made at line {o.line})" if o.line else ""))
        if o.calls > 1:
            chosen += f", last of {o.calls:,} calls"
        if o.seed:
            chosen += f", starting from the gradient {o.seed}"
        if o.error:
            chosen += f"; it raised {o.error}"
        outs.append([o.name, fmt_shape(o.shape), o.dtype, fmt_number(o.value) if o.value is not None else "-", chosen])
    blocks.append(Table(["output", "shape", "dtype", "value", "chosen as"], outs, caption="outputs"))
    blocks.append(Table(["wrt", "of", "status", "gradient", "shape", "norm", "note"], rows, caption="one row per tensor involved (reasons and fixes below)", total_rows=len(report.gradients)))
    changes = [g.change for g in report.gradients if g.change]
    for change in changes[:MAX_CHANGES]:
        blocks.append(Note(change, "ok"))
    if len(changes) > MAX_CHANGES:
        blocks.append(Note(f"… and {len(changes) - MAX_CHANGES:,} more .grad changes (in to_dict()['gradients'][i]['change'])", "ok"))
    for g in report.gradients:
        if g.status != "ok" and g.reason:
            blocks.append(Note(f"{wrt_label(g)} ({g.status}): {g.reason}. Fix: {g.fix}", g.status.severity))
            if len(blocks) > MAX_ROWS:
                break
    for note in report.notes:
        blocks.append(Note(note))
    for nc in report.not_computed:
        ask = f"; {ASK[nc.option]}" if nc.option in ASK else ""
        blocks.append(Note(f"not computed: {nc.what}: {nc.why}{ask}", "info"))
    return Section("Gradients", blocks)


def graph_text(info: GraphInfo, max_lines: int = MAX_GRAPH_LINES) -> str:
    """The graph as text, outputs first: one line per node with the nodes it sends gradients to,
    its cell line and the module that made it; a block that repeats is shown once with how many
    times it repeats."""
    nodes = info.nodes
    position = {node_id: pos for pos, node_id in enumerate(info.order)}
    repeats = {b.start: b for b in info.repeats}
    lines: list[str] = []

    def label(node: GraphNode) -> str:
        if node.kind == "leaf":
            return node.name or f"leaf{fmt_shape(node.shape)}"
        return f"#{position.get(node.id, node.id) + 1}"

    def describe(node: GraphNode) -> str:
        if node.kind == "leaf":
            head = f"#{position[node.id] + 1} {node.name or 'unnamed leaf'}  leaf {fmt_shape(node.shape)}"
        else:
            head = f"#{position[node.id] + 1} {node.op}" + (f" → {node.name}" if node.name else "")
            ins = [label(nodes[j]) for j in node.inputs]
            if ins:
                head += "  ← " + ", ".join(ins)
        if node.saved:
            head += f"  (saved {', '.join(node.saved)})"
        if node.line is not None:
            head += f"   [line {node.line}" + (f": {truncate(node.code, 60)}" if node.code else "") + "]"
        if node.module is not None and node.module < len(info.modules):
            head += f"  in {truncate(info.modules[node.module].name, 40)}"
        return head

    pos = 0
    while pos < len(info.order):
        if len(lines) >= max_lines:
            lines.append(f"… {len(info.order) - pos:,} more nodes not shown")
            break
        block = repeats.get(pos)
        if block is not None:
            for k in range(block.length):
                lines.append(describe(nodes[info.order[pos + k]]))
            lines.append(
                f"   ⋮ these {block.length} nodes repeat {block.times - 1:,} more times (#{pos + block.length + 1} … #{pos + block.times * block.length})"
                if block.length > 1
                else f"   ⋮ repeats {block.times - 1:,} more times (#{pos + 2} … #{pos + block.times})"
            )
            pos += block.times * block.length
            continue
        lines.append(describe(nodes[info.order[pos]]))
        pos += 1
    if info.truncated:
        lines.append(f"… the graph has more than {len(nodes):,} nodes: cut there")
    return "\n".join(lines)


def _modules(info: GraphInfo) -> str:
    """The modules that made nodes of the graph: ``mlp · Sequential, mlp.0 · Linear, …``."""
    used = sorted({n.module for n in info.nodes if n.module is not None and n.module < len(info.modules)})
    text = ", ".join(f"{info.modules[k].name} · {info.modules[k].type}" for k in used)
    return truncate(f"{len(used):,}: {text}", 300)


def _graph(report: AutogradReport) -> Section:
    info = report.graph
    if not info.nodes:
        return Section("Graph", [Note("no graph: nothing in the cell requires grad")])
    ops: dict[str, int] = {}
    for n in info.nodes:
        if n.kind == "op":
            ops[n.op] = ops.get(n.op, 0) + 1
    leaves = sum(1 for n in info.nodes if n.kind == "leaf")
    summary = KeyValues(
        [
            ("nodes", f"{len(info.nodes):,} ({len(info.nodes) - leaves:,} op{'' if len(info.nodes) - leaves == 1 else 's'}, {leaves:,} lea{'f' if leaves == 1 else 'ves'})"),
            ("ops", truncate(", ".join(f"{k} ×{v}" for k, v in sorted(ops.items(), key=lambda kv: -kv[1])[:8]), 200)),
            ("saved for backward", fmt_bytes(info.saved_bytes)),
        ]
        + ([("modules", _modules(info))] if info.modules else [])
    )
    as_text: list[Block] = [Note("read from the outputs (top) back to the inputs: each op node sends gradients to the nodes after ←"), Preformatted(graph_text(info))]
    picture = Picture(
        draw=lambda: draw_graph(report),
        text=as_text,
        caption="read from the outputs (top) down to the inputs: each arrow carries a gradient towards an input; hover over a node for its cell line, what it saved for backward and its row",
        text_summary="the graph as text",
    )
    blocks: list[Block] = [summary, picture]
    if info.repeats:
        big = max(info.repeats, key=lambda b: b.times * b.length)
        blocks.append(Note(f"repeated block collapsed: {' ← '.join(big.ops)} ×{big.times:,}"))
    return Section("Graph", blocks)


def _cost(report: AutogradReport) -> Section:
    c = report.cost
    rows = [
        ("forward (cell) time", _secs(c.forward_s)),
        ("backward time", _secs(c.backward_s) + f" ({c.backward_source})"),
        ("backward / forward", f"{c.ratio:.2f}×" if c.ratio is not None else "-"),
        ("saved for backward", fmt_bytes(c.saved_bytes) + (f" (and {c.saved_under_hooks:,} tensors packed by saved-tensor hooks, not counted)" if c.saved_under_hooks else "")),
        ("backward calls", f"{c.backward_calls:,} backward, {c.grad_calls:,} torch.autograd.grad"),
        ("magic's own time", f"{_secs(c.magic_s)} in the cell, {_secs(c.report_s)} building the report" + (f" ({_secs(c.extra_s)} of it in its own computations)" if c.extra_s else "")),
    ]
    if c.flops_forward is not None:
        rows.append(("FLOPs forward", fmt_number(c.flops_forward)))
        rows.append(("FLOPs backward", fmt_number(c.flops_backward)))
    blocks: list[Block] = [KeyValues(rows)]
    blocks.append(Note("every gradient has a cost: backward usually takes about 2× the forward time, and the tensors saved for it stay in memory until backward frees them"))
    return Section("Cost", blocks)


def _secs(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:,.0f} µs"
    if s < 1:
        return f"{s * 1e3:,.2f} ms"
    return f"{s:,.3f} s"


def _health(report: AutogradReport) -> Section:
    blocks: list[Block] = []
    nf = report.non_finite
    if nf:
        where = nf.get("where")
        if nf.get("op"):
            line = f" at line {nf['line']}: {nf['code']}" if nf.get("line") else ""
            if where == "forward":  # the first named value holding one: the op on its line that made it is not known
                what = f"the first value of the cell holding NaN/inf is {nf.get('name') or 'an output'}" + (f", made at line {nf['line']}: {nf['code']}" if nf.get("line") else "")
            else:
                what = f"the gradient first turns NaN/inf in backward: {nf['op']}" + (f" ({nf['name']})" if nf.get("name") else "") + line
            blocks.append(Note(what, "error"))
        else:
            hint = ASK.get(nf.get("ask") or "", "the op could not be found")
            blocks.append(Note(f"NaN/inf gradients; {hint}", "error"))
    if not report.health:
        blocks.append(Note("no parameter gradients to chart"))
        return Section("Health", blocks)
    rows = [[h.name, fmt_shape(h.shape), fmt_number(h.grad_norm), fmt_number(h.param_norm), fmt_number(h.ratio), h.flag or ""] for h in report.health[:MAX_ROWS]]
    flagged = [h for h in report.health if h.flag]
    blocks.append(Table(["parameter", "shape", "grad norm", "param norm", "grad/param", "flag"], rows, caption="per-parameter gradient norms, inputs first", total_rows=len(report.health)))
    bars = report.health if len(report.health) <= MAX_BARS else report.health[:: math.ceil(len(report.health) / MAX_BARS)]
    chart = Bars([truncate(h.name, 30) for h in bars], [h.grad_norm for h in bars], "gradient flow (norm per parameter, inputs first)", value_format="{:.3g}", log=True)
    caption = "gradient flow: the gradient norm of each parameter on a log scale, inputs first" + (f" (every {math.ceil(len(report.health) / MAX_BARS)}th of {len(report.health):,})" if len(bars) < len(report.health) else "")
    blocks.append(Picture(draw=lambda: gradient_flow(bars), text=[chart], caption=caption))
    for flag in ("NaN/inf", "exploding", "vanishing"):
        names = [h.name for h in flagged if h.flag == flag]
        if names:
            level: Level = "error" if flag == "NaN/inf" else "warning"
            blocks.append(Note(f"{flag}: {', '.join(names[:6])}{'…' if len(names) > 6 else ''} ({len(names)} parameter{'s' if len(names) > 1 else ''})", level))
    if not flagged:
        blocks.append(Note("no NaN/inf, vanishing or exploding gradients", "ok"))
    return Section("Health", blocks)


def _jacobian(report: AutogradReport) -> Section | None:
    if not report.jacobian:
        return None
    blocks: list[Block] = []
    for j in report.jacobian[:MAX_ROWS]:
        caption = f"d{j.of}/d{j.wrt}: shape {fmt_shape(j.shape)}, {j.entries:,} entries"
        if j.values is not None and j.entries <= 400:
            blocks.append(Preformatted(caption + "\n" + _matrix(j.values)))
        else:
            s = j.summary or {}
            blocks.append(KeyValues([("Jacobian", caption), ("norm", fmt_number(s.get("norm"))), ("min", fmt_number(s.get("min"))), ("max", fmt_number(s.get("max")))]))
    return Section("Jacobian", blocks)


def _matrix(values: Any) -> str:
    if not isinstance(values, list):
        return fmt_number(values)
    if values and not isinstance(values[0], list):
        return "[" + ", ".join(fmt_number(v) for v in values) + "]"
    return "\n".join(str(_round(r)) for r in values[:40])


def _check(report: AutogradReport) -> Section | None:
    c = report.check
    if c is None:
        return None
    level: Level = "ok" if c.ok else ("error" if c.ok is False else "info")
    return Section("Check", [Note(c.message, level), KeyValues([("inputs", ", ".join(c.inputs) or "-")])])


@builds(AutogradReport)
def autograd_panel(report: AutogradReport) -> Panel:
    """The panel of a ``%%autograd`` report."""
    headline, level = _headline(report)
    sections = [_gradients(report), _graph(report), _cost(report), _health(report)]
    for extra in (_jacobian(report), _check(report)):
        if extra is not None:
            sections.append(extra)
    return Panel(title="autograd · " + (truncate(", ".join(o.name for o in report.outputs), 80) or "no output"), headline=headline, sections=sections, headline_level=level)


__all__ = ["autograd_panel", "fmt_value", "graph_text"]
