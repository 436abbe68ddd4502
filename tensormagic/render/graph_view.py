"""What the autograd graph's picture shows: nodes, edges, boxes and colours, decided from the report.

:func:`graph_view` turns an :class:`~tensormagic.engine.autograd.report.AutogradReport` into a
:class:`GraphView` (plain data, no Graphviz): each node's label, caption, tooltip and status
(the colour: the gradient row of the tensor it makes, the op where a NaN first appears), the
tensors that get no gradient drawn beside the graph, repeated blocks collapsed to their first
copy in a box that says how often it repeats, and nodes grouped in boxes by the module that made
them.  A graph too big to draw whole is drawn at the module level (one node per module), or cut,
and the view says so.
"""

from __future__ import annotations

from collections import Counter

from tensormagic.engine.autograd.graph import GraphInfo
from tensormagic.engine.autograd.report import AutogradReport, GradientRow
from tensormagic.render.format import truncate
from tensormagic.render.graph_nodes import (
    WORDS,
    Box,
    GraphView,
    Rows,
    ViewEdge,
    ViewNode,
    captions,
    category,
    first_nan,
    module_chain,
    module_label,
    node_names,
    node_outputs,
    view_node,
    worst,
)

#: Nodes drawn one by one at most (after collapsing repeats); above, the module level.
FULL_LIMIT = 250
#: Nodes of the module-level drawing at most; above, the drawing is cut.
MODULE_LIMIT = 150
#: Tensors without a gradient drawn beside the graph at most.
MAX_EXTRA = 12

# -- collapsing repeated blocks ---------------------------------------------------------------


def _collapse(info: GraphInfo) -> tuple[list[int], dict[int, int], dict[int, tuple[int, int]]]:
    """(nodes drawn, node -> the node drawn for it, drawn node -> (repeat index, copies))."""
    rep = {i: i for i in range(len(info.nodes))}
    block_of: dict[int, tuple[int, int]] = {}
    for b, block in enumerate(info.repeats):
        first = info.order[block.start : block.start + block.length]
        for pos in range(block.start, block.start + block.times * block.length):
            if pos < len(info.order):
                rep[info.order[pos]] = first[(pos - block.start) % block.length]
        for i in first:
            block_of[i] = (b, block.times)
    drawn = [i for i in info.order if rep[i] == i]
    return drawn, rep, block_of


# -- the view ---------------------------------------------------------------------------------


def graph_view(report: AutogradReport, full_limit: int = FULL_LIMIT, module_limit: int = MODULE_LIMIT) -> GraphView:
    """What to draw for ``report``'s graph (see the module docstring)."""
    info = report.graph
    view = GraphView(total=len(info.nodes))
    outputs = [o.name for o in report.outputs]
    rows = Rows(report.gradients)
    of = node_outputs(info, outputs)
    nan_node, nan_words = first_nan(report)
    status: list[str] = []
    found: list[GradientRow | None] = []
    for n in info.nodes:
        row = rows.find(node_names(n), of[n.id]) if n.name else None
        found.append(row)
        status.append("nan" if n.id == nan_node else (category(row.status) if row is not None else "op"))
    drawn, rep, block_of = _collapse(info)
    copies: dict[int, list[int]] = {}
    for i, r in rep.items():
        copies.setdefault(r, []).append(i)
    for r, members in copies.items():
        if len(members) > 1:
            status[r] = worst([status[i] for i in members])
    if len(drawn) <= full_limit:
        _full(view, info, drawn, rep, block_of, copies, status, found, nan_node, nan_words)
    elif info.modules and any(info.nodes[i].module is not None for i in drawn):
        if not _modules(view, info, drawn, rep, status, module_limit):
            _cut(view, info, drawn, rep, status, found, nan_node, nan_words, full_limit)
    else:
        _cut(view, info, drawn, rep, status, found, nan_node, nan_words, full_limit)
    if view.level != "modules":
        _extra_tensors(view, report, info, rep)
    _notes(view, info, drawn, full_limit)
    view.alt = _alt(report, view, status)
    return view


def _full(view: GraphView, info: GraphInfo, drawn: list[int], rep: dict[int, int], block_of: dict[int, tuple[int, int]], copies: dict[int, list[int]], status: list[str], found: list[GradientRow | None], nan_node: int | None, nan_words: str | None) -> None:
    """Every drawn node, in boxes: modules, and repeated blocks at their modules' common part."""
    common: dict[int, tuple[int, ...]] = {}  # per block: the modules every copy is in
    spans: dict[int, str] = {}  # per block: "first … last" module the copies are in, below that
    for b, block in enumerate(info.repeats):
        members = info.order[block.start : block.start + block.times * block.length]
        chains = [module_chain(info, info.nodes[i].module) for i in members]
        prefix = chains[0] if chains else ()
        for c in chains[1:]:
            k = 0
            while k < min(len(prefix), len(c)) and prefix[k] == c[k]:
                k += 1
            prefix = prefix[:k]
        common[b] = prefix
        below = [c[len(prefix)] for c in chains if len(c) > len(prefix)]
        if below and below[0] != below[-1]:
            spans[b] = f" ({info.modules[below[0]].name} … {info.modules[below[-1]].name})"
    caption_of = captions(info, drawn)
    for i in drawn:
        n = info.nodes[i]
        chain = module_chain(info, n.module)
        box: list[str] = []
        if i in block_of:
            b, times = block_of[i]
            head = common[b]
            box = [f"m{k}" for k in head] + [f"r{b}"] + [f"m{k}" for k in chain[len(head):]]
            block = info.repeats[b]
            view.boxes.setdefault(f"r{b}", Box(f"r{b}", f"repeats {times:,}×{spans.get(b, '')}", f"these {block.length} node{'s' if block.length > 1 else ''} repeat {times:,} times in a row{spans.get(b, '')}: only the first copy (in backward order) is drawn", "repeat"))
        else:
            box = [f"m{k}" for k in chain]
        for k in chain:
            view.boxes.setdefault(f"m{k}", Box(f"m{k}", module_label(info, k), f"made by {info.modules[k].name} ({info.modules[k].type})", "module"))
        view.nodes.append(view_node(info, n, status[i], found[i], nan_node, nan_words, _box_path(box), copies.get(i, [i]), caption_of.get(i)))
    seen: set[tuple[int, int]] = set()
    for i, n in enumerate(info.nodes):
        for j in n.inputs:
            edge = (rep[i], rep[j])
            if edge not in seen:
                seen.add(edge)
                view.edges.append(ViewEdge(f"n{edge[0]}", f"n{edge[1]}"))


def _box_path(keys: list[str]) -> tuple[str, ...]:
    """Box keys as paths: the same module inside and outside a repeated block are two boxes."""
    return tuple("/".join(keys[: k + 1]) for k in range(len(keys)))


def _modules(view: GraphView, info: GraphInfo, drawn: list[int], rep: dict[int, int], status: list[str], limit: int) -> bool:
    """One node per module at the deepest level that fits ``limit``; False when none does."""
    chains = {i: module_chain(info, info.nodes[i].module) for i in range(len(info.nodes))}
    deepest = max((len(c) for c in chains.values()), default=0)
    outside = [i for i in drawn if not chains[i]]
    for depth in range(deepest, 0, -1):
        units = {chains[i][:depth] for i in drawn if chains[i]}
        if len(units) + min(len(outside), 1 if len(outside) > 40 else len(outside)) <= limit:
            break
    else:
        return False
    view.level = "modules"
    unit_of: dict[int, str] = {}
    members: dict[str, list[int]] = {}
    for i in range(len(info.nodes)):
        c = chains[rep[i]]
        key = "u" + "_".join(map(str, c[:depth])) if c else ("u_out" if len(outside) > 40 else f"n{rep[i]}")
        unit_of[i] = key
        members.setdefault(key, []).append(i)
    for key, ids in members.items():
        first = info.nodes[ids[0]]
        c = chains[rep[ids[0]]][:depth]
        if key.startswith("n"):  # an op outside any module, drawn as itself
            view.nodes.append(view_node(info, first, status[ids[0]], None, None, None, (), [ids[0]]))
            continue
        ops = Counter(info.nodes[i].op for i in ids if info.nodes[i].kind == "op")
        leaves = [name for i in ids if info.nodes[i].kind == "leaf" and (name := info.nodes[i].name)]
        summary = ", ".join(f"{op} ×{k}" for op, k in ops.most_common(6))
        tooltip = f"{len(ids):,} nodes: {summary}" + (f"\nleaves: {', '.join(leaves[:8])}{'…' if len(leaves) > 8 else ''}" if leaves else "")
        if c:
            m = info.modules[c[-1]]
            title, op = m.name, m.type
            for k in c[:-1]:
                view.boxes.setdefault(f"m{k}", Box(f"m{k}", module_label(info, k), f"made by {info.modules[k].name} ({info.modules[k].type})", "module"))
            box = _box_path([f"m{k}" for k in c[:-1]])
        else:
            title, op, box = "outside any module", None, ()
        view.nodes.append(ViewNode(key=key, kind="module", title=truncate(title, 40), op=op, caption=f"{len(ids):,} nodes", tooltip=tooltip, status=worst([status[i] for i in ids]), box=box))
    seen: set[tuple[str, str]] = set()
    for i, n in enumerate(info.nodes):
        for j in n.inputs:
            a, b = unit_of[i], unit_of[j]
            if a != b and (a, b) not in seen:
                seen.add((a, b))
                view.edges.append(ViewEdge(a, b))
    return True


def _cut(view: GraphView, info: GraphInfo, drawn: list[int], rep: dict[int, int], status: list[str], found: list[GradientRow | None], nan_node: int | None, nan_words: str | None, limit: int) -> None:
    """The first ``limit`` drawn nodes (outputs first) and one node standing for the rest."""
    view.level = "cut"
    shown = drawn[:limit]
    keep = set(shown)
    caption_of = captions(info, shown)
    for i in shown:
        view.nodes.append(view_node(info, info.nodes[i], status[i], found[i], nan_node, nan_words, (), [i], caption_of.get(i)))
    view.nodes.append(ViewNode(key="more", kind="more", title=f"… {len(drawn) - len(shown):,} more nodes", tooltip="not drawn: the text graph lists them", status="op"))
    seen: set[tuple[str, str]] = set()
    for i in shown:
        for j in info.nodes[i].inputs:
            b = f"n{rep[j]}" if rep[j] in keep else "more"
            if (f"n{i}", b) not in seen and f"n{i}" != b:
                seen.add((f"n{i}", b))
                view.edges.append(ViewEdge(f"n{i}", b))


def _extra_tensors(view: GraphView, report: AutogradReport, info: GraphInfo, rep: dict[int, int]) -> None:
    """The tensors of the rows that are not in the graph (no gradient, unused), beside it."""
    in_graph = {n for node in info.nodes for n in node_names(node)}
    drawn = {v.key for v in view.nodes}
    saved_by: dict[str, list[str]] = {}
    for node in info.nodes:
        for name in node.saved:
            key = f"n{rep[node.id]}"
            if key in drawn:
                saved_by.setdefault(name, []).append(key)
    extra = [r for r in report.gradients if r.wrt not in in_graph and not any(a in in_graph for a in r.aliases) and not r.status.has_gradient]
    for k, r in enumerate(extra[:MAX_EXTRA]):
        key = f"t{k}"
        sources = list(dict.fromkeys(saved_by.get(r.wrt, []) + [s for a in r.aliases for s in saved_by.get(a, [])]))
        tooltip = f"{r.wrt}: {r.status}\n{truncate(r.reason, 300)}" + (f"\nfix: {truncate(r.fix, 300)}" if r.fix else "")
        words = {"no_requires_grad": "requires_grad=False", "detached": "detached", "integer_dtype": "integer dtype", "unused": "not used", "not_computed": "not computed"}
        caption = f"line {r.line}" if r.line else None
        box = () if sources else ("off",)
        view.nodes.append(ViewNode(key=key, kind="tensor", title=truncate(r.wrt, 40), op=f"no gradient: {words.get(str(r.status), str(r.status))}", caption=caption, tooltip=tooltip, status=category(r.status), box=box))
        for s in sources[:4]:
            view.edges.append(ViewEdge(s, key, "saved"))
        if not sources:
            view.boxes.setdefault("off", Box("off", "not in the graph", "tensors of the cell that no gradient reaches", "off"))
    if len(extra) > MAX_EXTRA:
        view.notes.append(f"{len(extra) - MAX_EXTRA:,} more tensors without a gradient are listed in the Gradients section")


def _notes(view: GraphView, info: GraphInfo, drawn: list[int], limit: int) -> None:
    if view.level == "modules":
        view.notes.insert(0, f"{len(drawn):,} nodes are too many to draw one by one (the limit is {limit:,}): drawn at the module level, one node per module; the graph as text lists every node")
    elif view.level == "cut":
        view.notes.insert(0, f"drawing cut at {min(limit, len(drawn)):,} of {len(drawn):,} nodes (no module made them, so they cannot be grouped); the graph as text lists every node")
    if len(drawn) < len(info.nodes):
        view.notes.append(f"repeated blocks are drawn once ({len(info.nodes) - len(drawn):,} nodes collapsed)")
    if info.module_unknown and info.modules:
        view.notes.append(f"{info.module_unknown:,} nodes were made while the magic was not recording module calls (after a training loop repeated its graph): they are drawn outside the module boxes")
    if info.truncated:
        view.notes.append(f"the graph has more than {len(info.nodes):,} nodes: the walk stopped there")


def _alt(report: AutogradReport, view: GraphView, status: list[str]) -> str:
    outs = ", ".join(o.name for o in report.outputs[:3]) or "the output"
    info = report.graph
    leaves = [n for n in info.nodes if n.kind == "leaf"]
    by: dict[str, list[str]] = {}
    for v in view.nodes:
        if v.kind in ("leaf", "tensor") and v.title:
            by.setdefault(v.status, []).append(v.title)
    parts = [f"autograd graph of {truncate(outs, 60)}: {len(info.nodes):,} nodes ({len(info.nodes) - len(leaves):,} ops, {len(leaves):,} leaves)"]
    if view.level == "modules":
        parts.append("drawn at the module level")
    for cat in ("gradient", "none", "unused", "nan"):
        names = by.get(cat)
        if names:
            parts.append(f"{WORDS[cat]}: {truncate(', '.join(names[:8]), 120)}{'…' if len(names) > 8 else ''}")
    return "; ".join(parts)


__all__ = ["FULL_LIMIT", "MODULE_LIMIT", "Box", "GraphView", "ViewEdge", "ViewNode", "category", "graph_view", "worst"]
