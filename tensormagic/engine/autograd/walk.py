"""The autograd graph behind some tensors, as plain data: nodes, edges, names, cell lines, bytes.

:func:`walk_graph` visits the graph iteratively (no recursion, so any size works), with the
garbage collector paused (a 100,000-node walk would otherwise trigger full collections of the
whole heap).  It never *unpacks* a saved tensor: it reads ``SavedTensor.data`` of the
``_raw_saved_*`` attributes, which runs no saved-tensor hook (checkpointing, offloading) and
cannot recompute anything.  It notes what in the graph is user code (custom
``autograd.Function`` backwards, module backward hooks, saved-tensor hooks), so that the magic
never runs an extra pass that would run it again.  Chains deeper than
:data:`~tensormagic.engine.autograd.keeper.KEEP_FROM` are handed to the keeper for a safe teardown.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from tensormagic.engine.autograd import keeper
from tensormagic.engine.autograd.lines import Lines

#: Nodes visited at most; a bigger graph is cut there and says so.
MAX_NODES = 200_000
#: A repeated block is at most this many nodes long ...
MAX_PERIOD = 16
#: ... and is collapsed when it repeats at least this many times in a row.
MIN_REPEATS = 3

_RAW_SAVED: dict[type, tuple[str, ...]] = {}
_CUSTOM_WORDS = {
    "BackwardHookFunctionBackward": "module backward hooks (register_full_backward_hook)",
    "CheckpointFunctionBackward": "torch.utils.checkpoint (re-entrant: its backward runs the forward again)",
}


@dataclass(slots=True, kw_only=True)
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
    saved: list[str] = field(default_factory=list)  # names of the cell's tensors it saved
    custom: bool = False  # a custom autograd.Function's backward (user code)
    before_cell: bool = False  # made before the cell ran (an earlier cell's graph)


@dataclass(kw_only=True)
class RepeatedBlock:
    """``length`` consecutive nodes of :attr:`GraphInfo.order`, from ``start``, repeated ``times`` times."""

    start: int
    length: int
    times: int
    ops: list[str]


@dataclass(kw_only=True)
class GraphInfo:
    """The graph from the outputs back to the inputs."""

    nodes: list[GraphNode] = field(default_factory=list)
    edges: list[list[int]] = field(default_factory=list)  # [consumer, input]: gradient flows consumer -> input
    roots: list[int] = field(default_factory=list)
    order: list[int] = field(default_factory=list)  # topological, outputs first (the order backward runs them)
    repeats: list[RepeatedBlock] = field(default_factory=list)
    saved_bytes: int = 0
    saved_under_hooks: int = 0  # saved tensors packed by saved-tensor hooks (not counted in saved_bytes)
    truncated: bool = False
    depth: int = 0  # the longest chain from an output to an input


@dataclass(kw_only=True)
class Walk:
    """A walk's plain result plus the live objects the caller needs for a moment (dropped after)."""

    info: GraphInfo
    node_objects: list[Any]
    leaves: dict[int, torch.Tensor]  # node id -> leaf tensor
    user_code: list[str]  # what in the graph is user code an extra backward pass would run again

    def node_index(self) -> dict[int, int]:
        """id(node object) -> node id (valid while :attr:`node_objects` is alive)."""
        return {id(obj): i for i, obj in enumerate(self.node_objects)}


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a moment (as it was before, afterwards)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def node_name(node: Any) -> str:
    """``MulBackward0``, ``AccumulateGrad``, or a custom Function's backward name."""
    name = type(node).__name__
    return name if name != "BackwardCFunction" else str(getattr(node, "name", lambda: name)())


def _raw_saved(node: Any) -> tuple[str, ...]:
    kind = type(node)
    attrs = _RAW_SAVED.get(kind)
    if attrs is None:
        attrs = tuple(a for a in dir(kind) if a.startswith("_raw_saved_"))
        _RAW_SAVED[kind] = attrs
    return attrs


def _saved_objects(value: Any) -> Iterable[Any]:
    if isinstance(value, (tuple, list)):
        return value
    return (value,)


def _storage_key(t: torch.Tensor) -> tuple[Any, int, int] | None:
    try:
        s = t.untyped_storage()
        return (t.device, s.data_ptr(), s.nbytes())
    except Exception:  # noqa: BLE001 - sparse, nested, fake, wrapper subclasses: logical size
        return None


def _logical_bytes(t: torch.Tensor) -> int:
    try:
        return int(t.numel() * t.element_size())
    except Exception:  # noqa: BLE001 - nested tensors and exotic subclasses
        return 0


def _is_custom(node: Any) -> bool:
    return isinstance(node, torch.autograd.function.BackwardCFunction)


def walk_graph(
    roots: Sequence[Any],
    names: Mapping[int, str],
    grad_fn_names: Mapping[int, str] | None = None,
    *,
    lines: Lines | None = None,
    leaf_lines: Mapping[str, int] | None = None,
    source_lines: Sequence[str] = (),
    saved: bool = True,
    first_seq: int | None = None,
    max_nodes: int = MAX_NODES,
) -> Walk:
    """Visit the graph from ``roots`` (grad_fn nodes), iteratively.

    ``names`` maps id(tensor) -> name for the cell's tensors (leaves and saved inputs are named
    by it); ``grad_fn_names`` maps id(grad_fn) -> name (keep those grad_fn objects alive).
    ``lines`` gives each op's cell line, ``leaf_lines`` a name's assignment line; nodes numbered
    below ``first_seq`` were made before the cell.
    """
    with gc_paused():
        walk = _walk(roots, names, grad_fn_names or {}, lines, leaf_lines or {}, source_lines, saved, first_seq, max_nodes)
    if walk.info.depth >= keeper.KEEP_FROM:
        keeper.keep([walk.node_objects[i] for i in walk.info.order])
    return walk


def _walk(
    roots: Sequence[Any],
    names: Mapping[int, str],
    grad_fn_names: Mapping[int, str],
    lines: Lines | None,
    leaf_lines: Mapping[str, int],
    source_lines: Sequence[str],
    saved: bool,
    first_seq: int | None,
    max_nodes: int,
) -> Walk:
    index: dict[int, int] = {}
    objects: list[Any] = []
    nodes: list[GraphNode] = []
    edges: list[list[int]] = []
    leaves: dict[int, torch.Tensor] = {}
    storages: dict[Any, int] = {}
    loose_bytes = 0
    hooked = 0
    user_code: dict[str, None] = {}
    truncated = False

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
        variable = getattr(obj, "variable", None) if node.op == "AccumulateGrad" else None
        if isinstance(variable, torch.Tensor):
            node.kind = "leaf"
            leaves[i] = variable
            try:
                node.shape = list(variable.shape)
            except Exception:  # noqa: BLE001 - nested tensors have no single shape
                node.shape = None
            node.name = names.get(id(variable))
            if node.name:
                node.line = leaf_lines.get(node.name)
        else:
            node.name = grad_fn_names.get(id(obj))
            try:
                seq = obj._sequence_nr()
            except Exception:  # noqa: BLE001 - nodes without a sequence number
                seq = None
            if seq is not None and first_seq is not None and seq < first_seq:
                node.before_cell = True
            elif seq is not None and lines is not None:
                node.line = lines.line_of(seq)
            if node.line is None and node.name and not node.before_cell:
                node.line = leaf_lines.get(node.name.split(", ")[0])
            if _is_custom(obj):
                node.custom = True
                user_code[_CUSTOM_WORDS.get(node.op, f"{node.op} (a custom autograd.Function: its backward is your Python code)")] = None
        if saved:
            for attr in _raw_saved(obj):
                try:
                    value = getattr(obj, attr)
                except Exception:  # noqa: BLE001 - freed, or not readable on this node
                    continue
                for st in _saved_objects(value):
                    try:
                        if st.unpack_hook is not None:
                            hooked += 1
                            user_code["saved-tensor hooks (checkpointing, offloading or your own saved_tensors_hooks)"] = None
                            continue
                        t = st.data
                    except Exception:  # noqa: BLE001 - not a SavedTensor after all
                        continue
                    if not isinstance(t, torch.Tensor):
                        continue  # released by a backward that did not retain the graph
                    name = names.get(id(t))
                    if name is not None and name not in node.saved:
                        node.saved.append(name)
                    key = _storage_key(t)
                    if key is None:
                        size = _logical_bytes(t)
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
    order, depth = topological_order(nodes, root_ids)
    info = GraphInfo(
        nodes=nodes,
        edges=edges,
        roots=root_ids,
        order=order,
        repeats=find_repeats([_signature(nodes[i]) for i in order], [nodes[i].op for i in order]),
        saved_bytes=sum(storages.values()) + loose_bytes,
        saved_under_hooks=hooked,
        truncated=truncated,
        depth=depth,
    )
    return Walk(info=info, node_objects=objects, leaves=leaves, user_code=list(user_code))


def topological_order(nodes: Sequence[GraphNode], roots: Sequence[int]) -> tuple[list[int], int]:
    """An order in which every node comes after all the nodes that send it a gradient (the order
    backward can run them), outputs first, and the depth of the graph.  Short side branches (a
    weight's ``TBackward0``) are listed right under the op that uses them, the long chain last."""
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
    return order, (max(height) + 1 if height else 0)


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


def merge_graphs(infos: Sequence[GraphInfo]) -> GraphInfo:
    """Several graphs as one (node ids shifted), for a report of several outputs."""
    if len(infos) == 1:
        return infos[0]
    merged = GraphInfo()
    for info in infos:
        off = len(merged.nodes)
        for n in info.nodes:
            merged.nodes.append(
                GraphNode(
                    id=n.id + off, op=n.op, kind=n.kind, name=n.name, line=n.line, code=n.code,
                    inputs=[j + off for j in n.inputs], shape=n.shape, saved_bytes=n.saved_bytes,
                    saved=n.saved, custom=n.custom, before_cell=n.before_cell,
                )
            )
        merged.edges += [[a + off, b + off] for a, b in info.edges]
        merged.roots += [r + off for r in info.roots]
        start = len(merged.order)
        merged.order += [i + off for i in info.order]
        merged.repeats += [RepeatedBlock(start=b.start + start, length=b.length, times=b.times, ops=b.ops) for b in info.repeats]
        merged.saved_bytes += info.saved_bytes
        merged.saved_under_hooks += info.saved_under_hooks
        merged.truncated = merged.truncated or info.truncated
        merged.depth = max(merged.depth, info.depth)
    return merged


__all__ = ["GraphInfo", "GraphNode", "RepeatedBlock", "Walk", "find_repeats", "gc_paused", "merge_graphs", "node_name", "topological_order", "walk_graph"]
