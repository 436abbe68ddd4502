"""The parts of the autograd graph's picture: drawn nodes, edges and boxes, and how one node is
named, captioned, tooltipped and coloured from the report (its gradient row, where a NaN starts).

Plain data for :mod:`.graph_view` (what to draw) and :mod:`.graph_drawing` (drawing it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tensormagic.engine.autograd.graph import GraphInfo, GraphNode
from tensormagic.engine.autograd.report import AutogradReport, GradientRow, Status
from tensormagic.render.format import fmt_bytes, fmt_shape, truncate

#: Status categories, worst last: the colour of a node.
ORDER = ("op", "gradient", "none", "unused", "nan")
WORDS = {"gradient": "gradient computed", "none": "no gradient", "unused": "unused", "nan": "NaN/inf", "op": "op (no variable)"}


def category(status: Status) -> str:
    """The colour category of a gradient row's status."""
    if status == Status.NON_FINITE:
        return "nan"
    if status in (Status.OK, Status.NON_LEAF):
        return "gradient"
    if status == Status.UNUSED:
        return "unused"
    return "none"


def worst(categories: Sequence[str]) -> str:
    """The worst of some status categories (``op`` when there are none)."""
    return max(categories, key=ORDER.index, default="op")


@dataclass
class ViewNode:
    """One drawn node (``key`` is its DOT name)."""

    key: str
    kind: str  # "op" | "leaf" | "tensor" (not in the graph) | "module" (module level) | "more"
    title: str | None  # bold first line: the variable or module name
    op: str | None = None
    caption: str | None = None  # small last line: the cell line
    tooltip: str = ""
    status: str = "op"
    box: tuple[str, ...] = ()  # the boxes it sits in, outermost first
    first_nan: bool = False
    before_cell: bool = False
    output: bool = False  # a tensor the gradients are taken of


@dataclass
class ViewEdge:
    """Gradient flows from ``a`` to ``b`` (style "grad"), or ``a`` saved tensor ``b`` ("saved")."""

    a: str
    b: str
    style: str = "grad"


@dataclass
class Box:
    """A box around nodes: a module, a repeated block or the tensors off the graph."""

    key: str
    label: str
    tooltip: str
    kind: str  # "module" | "repeat" | "off"


@dataclass
class GraphView:
    """The picture's content (see the module docstring)."""

    nodes: list[ViewNode] = field(default_factory=list)
    edges: list[ViewEdge] = field(default_factory=list)
    boxes: dict[str, Box] = field(default_factory=dict)
    level: str = "full"  # "full" | "modules" | "cut"
    notes: list[str] = field(default_factory=list)
    alt: str = "autograd graph"
    total: int = 0  # nodes of the graph


# -- statuses ---------------------------------------------------------------------------------


def node_outputs(info: GraphInfo, outputs: list[str]) -> list[str | None]:
    """The output each node's gradient comes from (when the roots match the report's outputs)."""
    out: list[str | None] = [None] * len(info.nodes)
    if len(outputs) != len(info.roots):
        return out
    for root, name in zip(info.roots, outputs):
        stack = [root]
        while stack:
            i = stack.pop()
            if out[i] is not None:
                continue
            out[i] = name
            stack.extend(info.nodes[i].inputs)
    return out


class Rows:
    """Gradient rows by (output, name) and by name."""

    def __init__(self, rows: Sequence[GradientRow]) -> None:
        self.by_of: dict[tuple[str, str], GradientRow] = {}
        self.by_name: dict[str, GradientRow] = {}
        for r in rows:
            for n in (r.wrt, *r.aliases):
                self.by_of.setdefault((r.of, n), r)
                self.by_name.setdefault(n, r)

    def find(self, names: list[str], of: str | None) -> GradientRow | None:
        """The row of the first of ``names`` found, for output ``of`` if it has one."""
        for n in names:
            got = self.by_of.get((of, n)) if of is not None else None
            if got is None:
                got = self.by_name.get(n)
            if got is not None:
                return got
        return None


def node_names(node: GraphNode) -> list[str]:
    """The variable names a node's output is known by (``h, d`` -> [h, d])."""
    return [n for n in (node.name or "").split(", ") if n]


def captions(info: GraphInfo, drawn: list[int], small: int = 30) -> dict[int, str]:
    """Each drawn node's small caption: the first op of a cell line shows the line's code, the
    others (and leaves) only its number, and in a big graph (or one made by one line) nothing."""
    out: dict[int, str] = {}
    shown: set[int] = set()
    if len({info.nodes[i].line for i in drawn if info.nodes[i].kind == "op"}) <= 1:
        small = 0  # one line made every op: its number on each says nothing
    for i in drawn:
        n = info.nodes[i]
        if n.line is None:
            continue
        if n.kind == "op" and n.line not in shown:
            shown.add(n.line)
            out[i] = f"line {n.line}" + (f": {truncate(n.code, 36)}" if n.code else "")
        elif len(drawn) <= small:
            out[i] = f"line {n.line}"
    return out


def tooltip(node: GraphNode, row: GradientRow | None, first_nan: str | None) -> str:
    """What hovering over the node shows: op and name, cell line and code, what it saved, its row."""
    head = node.op if node.kind == "op" else f"leaf {node.name or ''} {fmt_shape(node.shape)}".strip()
    if node.kind == "op" and node.name:
        head += f" → {node.name}"
    lines = [head]
    if node.line is not None:
        lines.append(f"line {node.line}" + (f": {node.code}" if node.code else ""))
    if node.saved or node.saved_bytes:
        lines.append("saved for backward: " + (", ".join(node.saved) + ", " if node.saved else "") + fmt_bytes(node.saved_bytes, exact=False))
    if row is not None:
        lines.append(f"{row.wrt}: {row.status}" + (f" ({row.reason})" if row.reason and row.status != Status.OK else ""))
    if first_nan:
        lines.append(first_nan)
    if node.custom:
        lines.append("a custom autograd.Function: its backward is your Python code")
    if node.before_cell:
        lines.append("made before this cell ran")
    return "\n".join(truncate(x, 300) for x in lines)


def first_nan(report: AutogradReport) -> tuple[int | None, str | None]:
    """The node where the report found a NaN/inf first, and what to say about it."""
    nf = report.non_finite
    if not nf or not nf.get("op"):
        return None, None
    nodes = report.graph.nodes
    if nf.get("where") == "forward":
        name = nf.get("name")
        for n in nodes:
            if name and name in node_names(n):
                return n.id, f"the value first turns NaN/inf here (line {nf.get('line')})"
        return None, None
    for n in nodes:
        if n.op == nf.get("op") and (nf.get("line") is None or n.line == nf.get("line")) and (not nf.get("name") or nf.get("name") in node_names(n) or n.name is None):
            return n.id, "the gradient first turns NaN/inf here"
    return None, None


def module_chain(info: GraphInfo, k: int | None) -> tuple[int, ...]:
    """Module index ``k`` and its parents, outermost first."""
    out: list[int] = []
    while k is not None and k < len(info.modules) and len(out) < 64:
        out.append(k)
        k = info.modules[k].parent
    return tuple(reversed(out))


def module_label(info: GraphInfo, k: int) -> str:
    """A box's label: ``mlp.0 · Linear``."""
    m = info.modules[k]
    return f"{m.name} · {m.type}" if m.named else f"{m.type} (no variable holds it)"


def view_node(info: GraphInfo, n: GraphNode, status: str, row: GradientRow | None, nan_node: int | None, nan_words: str | None, box: tuple[str, ...], more: list[int], caption: str | None = None) -> ViewNode:
    """Graph node ``n`` as drawn (``more``: the nodes it stands for, when a repeat is collapsed)."""
    names = node_names(n)
    title = ", ".join(names) if names else None
    if n.kind == "leaf":
        title = title or "leaf"
        op = fmt_shape(n.shape) if n.shape else None  # nothing for a scalar
    else:
        op = n.op
    tip = tooltip(n, row, nan_words if n.id == nan_node else None)
    if len(more) > 1:
        others = [name for i in more[1:] if (name := info.nodes[i].name)]
        tip += f"\n(the first of {len(more):,} like it" + (f": also {', '.join(others[:4])}{'…' if len(others) > 4 else ''}" if others else "") + ")"
    return ViewNode(
        key=f"n{n.id}", kind=n.kind, title=truncate(title, 40) if title else None, op=op, caption=caption,
        tooltip=tip, status=status, box=box, first_nan=n.id == nan_node, before_cell=n.before_cell, output=n.id in info.roots,
    )


__all__ = ["ORDER", "WORDS", "Box", "GraphView", "Rows", "ViewEdge", "ViewNode", "captions", "category", "first_nan", "module_chain", "module_label", "node_names", "node_outputs", "tooltip", "view_node", "worst"]
