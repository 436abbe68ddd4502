"""The autograd graph behind some tensors, as plain data: nodes, edges, names, cell lines.

Pure (torch only).  :func:`walk_graph` visits the graph iteratively (no recursion, so graphs of
hundreds of thousands of nodes work), reads what each node saved for backward (bytes, and which
tensors of the namespace took part), names nodes after the variables that hold their outputs and
finds repeated blocks so that a 100-layer network reads as one layer times 100.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

#: Nodes visited at most; a bigger graph is cut there and says so.
MAX_NODES = 200_000
#: A repeated block is at most this many nodes long ...
MAX_PERIOD = 16
#: ... and is collapsed when it repeats at least this many times in a row.
MIN_REPEATS = 3

_SAVED_ATTRS: dict[type, tuple[str, ...]] = {}


@dataclass(slots=True)
class GraphNode:
    """One node: an op's backward (``MulBackward0``) or a leaf (``AccumulateGrad``)."""

    id: int
    op: str
    kind: str  # "op" | "leaf"
    name: str | None = None  # the variable(s) holding this node's output, or the leaf's name
    line: int | None = None  # the cell line that made it (1-based, within the cell)
    code: str | None = None  # that line's source
    inputs: list[int] = field(default_factory=list)  # ids of the nodes it sends gradients to
    shape: list[int] | None = None  # leaves only
    saved_bytes: int = 0
    saved: list[str] = field(default_factory=list)  # names of namespace tensors it saved


@dataclass
class RepeatedBlock:
    """``length`` consecutive nodes of :attr:`GraphInfo.order`, from position ``start``, repeated ``times`` times."""

    start: int
    length: int
    times: int
    ops: list[str]


@dataclass
class GraphInfo:
    """The graph from the outputs back to the inputs."""

    nodes: list[GraphNode]
    edges: list[list[int]]  # [consumer, input]: gradient flows consumer -> input
    roots: list[int]
    order: list[int]  # topological, outputs first (the order backward runs them)
    repeats: list[RepeatedBlock]
    saved_bytes: int
    truncated: bool = False


@dataclass
class Walk:
    """A walk's plain result plus the live objects the caller needs for a moment (dropped after)."""

    info: GraphInfo
    node_objects: list[Any]
    leaves: dict[int, torch.Tensor]  # node id -> leaf tensor
    saved_ids: set[int]  # ids of namespace tensors saved by some node
    node_ids: set[int]  # id() of every node object (valid while node_objects is alive)


class LineMap:
    """Which cell line made which node, from the sequence numbers the op recorder saw."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.lines: list[int] = []

    def add(self, seq: int, line: int) -> None:
        if self.seqs and seq <= self.seqs[-1]:
            # sequence numbers only grow in one thread; an older one means another thread
            i = bisect.bisect_left(self.seqs, seq)
            if i < len(self.seqs) and self.seqs[i] == seq:
                return
            self.seqs.insert(i, seq)
            self.lines.insert(i, line)
            return
        self.seqs.append(seq)
        self.lines.append(line)

    def line_of(self, seq: int) -> int | None:
        """The line of the recorded op whose call made node ``seq`` (the first recorded at or after it)."""
        i = bisect.bisect_left(self.seqs, seq)
        if i == len(self.seqs):
            return None
        # nodes made inside one op call have sequence numbers between the previous op's result and this one's
        return self.lines[i]


class LineSpans:
    """Which cell line made which node, from the sequence number each cell line started at.

    Filled by :class:`tensormagic.engine.autograd_trace.LineTracer`: nodes numbered from one
    line's start up to the next line's start were made while that line ran.
    """

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.lines: list[int] = []

    def add(self, seq: int, line: int) -> None:
        if self.starts and seq <= self.starts[-1]:
            self.lines[-1] = line  # the previous line made no node: this one starts there
            return
        self.starts.append(seq)
        self.lines.append(line)

    def line_of(self, seq: int) -> int | None:
        """The line that was running when node ``seq`` was made."""
        i = bisect.bisect_right(self.starts, seq) - 1
        return self.lines[i] if i >= 0 else None


def _saved_attrs(node: Any) -> tuple[str, ...]:
    """The ``_saved_*`` attributes of a node's type that may hold tensors (those seen holding
    plain values, sizes, strides and flags, are dropped by :func:`_never_tensors`)."""
    kind = type(node)
    attrs = _SAVED_ATTRS.get(kind)
    if attrs is None:
        attrs = tuple(a for a in dir(kind) if a.startswith("_saved_"))
        _SAVED_ATTRS[kind] = attrs
    return attrs


def _never_tensors(kind: type, attr: str) -> None:
    _SAVED_ATTRS[kind] = tuple(a for a in _SAVED_ATTRS.get(kind, ()) if a != attr)


def _is_plain(value: Any) -> bool:
    """True for saved values that are never tensors for this attribute (ints, sizes, flags)."""
    if isinstance(value, (bool, int, float, str, torch.dtype, torch.device)):
        return True
    if isinstance(value, (tuple, list)) and value:
        return all(isinstance(v, (bool, int, float)) for v in value)
    return False


def _tensors_in(value: Any) -> Iterable[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            if isinstance(v, torch.Tensor):
                yield v


def _storage_key(t: torch.Tensor) -> tuple[Any, int, int] | None:
    try:
        s = t.untyped_storage()
        return (t.device, s.data_ptr(), s.nbytes())
    except Exception:  # noqa: BLE001 - sparse, nested, fake: count their logical size
        return None


def node_name(node: Any) -> str:
    """``MulBackward0``, ``AccumulateGrad``, or a custom Function's backward name."""
    name = type(node).__name__
    return name if name != "BackwardCFunction" else getattr(node, "name", lambda: name)()


def walk_graph(
    roots: Sequence[Any],
    tensor_names: Mapping[int, str],
    grad_fn_names: Mapping[int, str] | None = None,
    lines: LineMap | LineSpans | None = None,
    leaf_lines: Mapping[str, int] | None = None,
    source_lines: Sequence[str] = (),
    saved: bool = True,
    max_nodes: int = MAX_NODES,
) -> Walk:
    """Visit the graph from ``roots`` (grad_fn nodes), iteratively.

    ``tensor_names`` maps id(tensor) -> name for the namespace's tensors (leaves and saved inputs
    are named by it); ``grad_fn_names`` maps id(grad_fn) -> name (pass the grad_fn objects' owners
    alive).  ``lines`` gives each op's cell line, ``leaf_lines`` a name's assignment line.
    """
    index: dict[int, int] = {}
    objects: list[Any] = []
    nodes: list[GraphNode] = []
    edges: list[list[int]] = []
    leaves: dict[int, torch.Tensor] = {}
    saved_ids: set[int] = set()
    storages: dict[Any, int] = {}
    loose_bytes = 0
    truncated = False
    grad_fn_names = grad_fn_names or {}

    def add(obj: Any) -> int:
        i = len(objects)
        index[id(obj)] = i
        objects.append(obj)
        nodes.append(GraphNode(id=i, op=node_name(obj), kind="op"))
        return i

    root_ids: list[int] = []
    stack: list[int] = []
    for r in roots:
        if r is None:
            continue
        if id(r) in index:
            root_ids.append(index[id(r)])
            continue
        i = add(r)
        root_ids.append(i)
        stack.append(i)
    while stack:
        i = stack.pop()
        obj = objects[i]
        node = nodes[i]
        variable = getattr(obj, "variable", None) if node.op.endswith("AccumulateGrad") else None
        if isinstance(variable, torch.Tensor):
            node.kind = "leaf"
            leaves[i] = variable
            node.shape = list(variable.shape)
            node.name = tensor_names.get(id(variable))
            if node.name and leaf_lines:
                node.line = leaf_lines.get(node.name)
        else:
            node.name = grad_fn_names.get(id(obj))
            if lines is not None:
                try:
                    node.line = lines.line_of(obj._sequence_nr())
                except Exception:  # noqa: BLE001 - nodes made outside the recorder
                    node.line = None
            if node.line is None and node.name and leaf_lines:
                node.line = leaf_lines.get(node.name.split(", ")[0])
        if saved:
            for attr in _saved_attrs(obj):
                try:
                    value = getattr(obj, attr)
                except Exception:  # noqa: BLE001 - freed by a backward that did not retain the graph
                    continue
                if _is_plain(value):
                    _never_tensors(type(obj), attr)
                    continue
                for t in _tensors_in(value):
                    name = tensor_names.get(id(t))
                    if name is not None:
                        saved_ids.add(id(t))
                        if name not in node.saved:
                            node.saved.append(name)
                    key = _storage_key(t)
                    size = t.numel() * t.element_size()
                    if key is None:
                        loose_bytes += size
                        node.saved_bytes += size
                    elif key not in storages:
                        storages[key] = key[2]
                        node.saved_bytes += key[2]
        try:
            nexts = obj.next_functions
        except Exception:  # noqa: BLE001
            nexts = ()
        for nxt, _ in nexts:
            if nxt is None:
                continue
            j = index.get(id(nxt))
            if j is None:
                if len(objects) >= max_nodes:
                    truncated = True
                    continue
                j = add(nxt)
                stack.append(j)
            node.inputs.append(j)
            edges.append([i, j])
    for node in nodes:
        if node.line is not None and 0 < node.line <= len(source_lines):
            node.code = source_lines[node.line - 1].strip()
    order = topological_order(nodes, root_ids)
    info = GraphInfo(
        nodes=nodes,
        edges=edges,
        roots=root_ids,
        order=order,
        repeats=find_repeats([_signature(nodes[i]) for i in order], [nodes[i].op for i in order]),
        saved_bytes=sum(storages.values()) + loose_bytes,
        truncated=truncated,
    )
    return Walk(info, objects, leaves, saved_ids, set(index))


def topological_order(nodes: Sequence[GraphNode], roots: Sequence[int]) -> list[int]:
    """An order in which every node comes after all the nodes that send it a gradient (the order
    backward can run them), outputs first; short side branches (a weight's ``TBackward0``) are
    listed right under the op that uses them, the long input chain last."""
    n = len(nodes)
    pending = [0] * n
    for node in nodes:
        for j in node.inputs:
            pending[j] += 1
    # height: the longest path down to a leaf, computed in a reverse plain Kahn order
    plain: list[int] = []
    todo = [r for r in dict.fromkeys(roots) if pending[r] == 0]
    left = list(pending)
    while todo:
        i = todo.pop()
        plain.append(i)
        for j in nodes[i].inputs:
            left[j] -= 1
            if left[j] == 0:
                todo.append(j)
    height = [0] * n
    for i in reversed(plain):
        ins = nodes[i].inputs
        if ins:
            height[i] = 1 + max(height[j] for j in ins)
    order: list[int] = []
    ready = [r for r in dict.fromkeys(roots) if pending[r] == 0][::-1]
    while ready:
        i = ready.pop()
        order.append(i)
        freed = []
        for j in nodes[i].inputs:
            pending[j] -= 1
            if pending[j] == 0:
                freed.append(j)
        # the stack pops the last pushed first: push the tallest input first, so it comes last
        freed.sort(key=lambda k: -height[k])
        ready.extend(freed)
    if len(order) < n:  # nodes not reachable from a root with pending == 0 (cannot happen): keep them
        seen = set(order)
        order += [i for i in range(n) if i not in seen]
    return order


def _signature(node: GraphNode) -> tuple[Any, ...]:
    return (node.op, node.kind, tuple(node.shape) if node.shape is not None else None, len(node.inputs))


def find_repeats(signatures: Sequence[Any], ops: Sequence[str], max_period: int = MAX_PERIOD, min_repeats: int = MIN_REPEATS) -> list[RepeatedBlock]:
    """Runs where a block of ``length`` signatures repeats ``times`` times in a row (greedy, left to right)."""
    n = len(signatures)
    found: list[RepeatedBlock] = []
    i = 0
    while i < n:
        best: tuple[int, int] | None = None
        for p in range(1, min(max_period, (n - i) // min_repeats) + 1):
            times = 1
            while i + (times + 1) * p <= n and signatures[i + times * p : i + (times + 1) * p] == signatures[i : i + p]:
                times += 1
            if times >= min_repeats and (best is None or times * p > best[0] * best[1] + p):
                best = (times, p)
        if best is None:
            i += 1
            continue
        times, p = best
        found.append(RepeatedBlock(start=i, length=p, times=times, ops=list(ops[i : i + p])))
        i += times * p
    return found


def fmt_shape(shape: list[int] | None) -> str:
    if shape is None:
        return ""
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


__all__ = ["GraphInfo", "GraphNode", "LineMap", "LineSpans", "RepeatedBlock", "Walk", "find_repeats", "topological_order", "walk_graph"]
