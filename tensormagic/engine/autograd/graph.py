"""The autograd graph as plain data: its nodes, their order, repeated blocks, several graphs merged.

:mod:`~tensormagic.engine.autograd.walk` builds a :class:`GraphInfo` from live graph objects; the
report, the health checks and the pictures read it.  Nothing here holds a tensor or a node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from tensormagic.engine.autograd.modules import ModuleInfo

#: A repeated block is at most this many nodes long ...
MAX_PERIOD = 16
#: ... and is collapsed when it repeats at least this many times in a row.
MIN_REPEATS = 3


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
    saved: list[str] = field(default_factory=list)  # names of the cell's tensors it saved
    custom: bool = False  # a custom autograd.Function's backward (user code)
    before_cell: bool = False  # made before the cell ran (an earlier cell's graph)
    module: int | None = None  # the innermost module call that made it (a leaf: the module holding it), in GraphInfo.modules


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
    saved_unread: int = 0  # nodes whose saved tensors were not read (saved_bytes is then a lower bound)
    truncated: bool = False
    depth: int = 0  # the longest chain from an output to an input
    modules: list[ModuleInfo] = field(default_factory=list)  # the modules GraphNode.module points to (named after the cell)
    module_unknown: int = 0  # op nodes made while module calls were not recorded (their module is not known)

    def leaf_positions(self) -> dict[str | None, int]:
        """Each leaf's name -> its place in :attr:`order` (outputs first: 0 only for an output
        that is itself a leaf; a name on several leaves: the last one's)."""
        nodes = self.nodes
        return {node.name: p for p, node in enumerate(map(nodes.__getitem__, self.order)) if node.kind == "leaf"}

    def slim(self) -> GraphInfo:
        """What an older call of a loop keeps of its graph: the saved bytes only (the report
        shows the last call's graph)."""
        return GraphInfo(saved_bytes=self.saved_bytes, saved_under_hooks=self.saved_under_hooks)


def topological_order(node_inputs: Sequence[Sequence[int]], roots: Sequence[int]) -> tuple[list[int], int]:
    """An order in which every node comes after all the nodes that send it a gradient (the order
    backward can run them), outputs first, and the depth of the graph.  ``node_inputs[i]``: the
    nodes node ``i`` sends gradients to.  Short side branches (a weight's ``TBackward0``) are
    listed right under the op that uses them, the long chain last."""
    n = len(node_inputs)
    targets = list(chain.from_iterable(node_inputs))
    branching = n > 0 and max(map(len, node_inputs)) > 1
    if not branching and len(set(targets)) == len(targets):  # each node one input and one user at most
        line = _chain(roots, targets, node_inputs)
        if len(line) == n:  # one chain: followed from its output
            return line, n
    pending = [0] * n
    for j in targets:
        pending[j] += 1
    starts = [r for r in dict.fromkeys(roots) if pending[r] == 0]
    height = [0] * n
    if branching:  # the longest path down to a leaf, in a reverse plain Kahn order: to sort by
        plain: list[int] = []
        todo = list(starts)
        left = list(pending)
        while todo:
            i = todo.pop()
            plain.append(i)
            for j in node_inputs[i]:
                left[j] -= 1
                if left[j] == 0:
                    todo.append(j)
        _heights(plain, node_inputs, height)
    order: list[int] = []
    ready = starts[::-1]
    while ready:
        i = ready.pop()
        order.append(i)
        ins = node_inputs[i]
        if len(ins) == 1:
            j = ins[0]
            pending[j] -= 1
            if pending[j] == 0:
                ready.append(j)
            continue
        freed = []
        for j in ins:
            pending[j] -= 1
            if pending[j] == 0:
                freed.append(j)
        # the stack pops the last pushed first: push the tallest input first, so it comes last
        if len(freed) > 1:
            freed.sort(key=height.__getitem__, reverse=True)
        ready.extend(freed)
    if not branching:  # no node has two inputs: no order needed the heights, the depth does
        _heights(order, node_inputs, height)
    if len(order) < n:  # nodes not reachable from a root with pending == 0 (cannot happen): keep them
        seen = set(order)
        order += [i for i in range(n) if i not in seen]
    return order, (max(height) + 1 if height else 0)


def _chain(roots: Sequence[int], targets: list[int], node_inputs: Sequence[Sequence[int]]) -> list[int]:
    """The nodes of the chain from the one root no node sends a gradient to (``targets``: every
    node's inputs, flat), when each node has one input at most; numbered along the chain (as the
    walk numbers a chain), it is read off at once."""
    starts = set(roots).difference(targets)
    if len(starts) != 1:
        return []
    start = starts.pop()
    if start == 0 and targets == list(range(1, len(node_inputs))):
        return list(range(len(node_inputs)))
    order = [start]
    ins = node_inputs[start]
    while ins:
        order.append(ins[0])
        ins = node_inputs[ins[0]]
    return order


def _heights(order: Sequence[int], node_inputs: Sequence[Sequence[int]], height: list[int]) -> None:
    """``height[i]``: the longest path from node ``i`` down to a leaf (``order``: outputs first)."""
    for i in reversed(order):
        ins = node_inputs[i]
        if len(ins) == 1:
            height[i] = 1 + height[ins[0]]
        elif ins:
            height[i] = 1 + max([height[j] for j in ins])


def node_signatures(nodes: Sequence[GraphNode], order: Sequence[int]) -> list[tuple[Any, ...]]:
    """What makes two nodes alike for :func:`find_repeats` (op, kind, number of inputs, and a
    leaf's shape), in ``order``."""
    return [(n.op, n.kind, len(n.inputs), tuple(n.shape) if n.shape is not None else None) for n in map(nodes.__getitem__, order)]


def find_repeats(signatures: Sequence[Any], ops: Sequence[str], max_period: int = MAX_PERIOD, min_repeats: int = MIN_REPEATS) -> list[RepeatedBlock]:
    """Runs where a block of ``length`` signatures repeats ``times`` times in a row (greedy, left to right)."""
    ids = {sig: k for k, sig in enumerate(dict.fromkeys(signatures))}
    signatures = list(map(ids.__getitem__, signatures))  # ints compare fastest
    n = len(signatures)
    found: list[RepeatedBlock] = []
    i = 0
    while i < n:
        best: tuple[int, int] | None = None
        for p in range(1, min(max_period, (n - i) // min_repeats) + 1):
            if best is not None and p % best[1] == 0:
                continue  # a multiple of a period that repeats already covers no more
            # (most blocks do not repeat even once: that check inline, the counting apart)
            times = _times_repeated(signatures, i, p) if signatures[i + p : i + 2 * p] == signatures[i : i + p] else 1
            if times >= min_repeats and (best is None or times * p > best[0] * best[1] + p):
                best = (times, p)
        if best is None:
            i += 1
            continue
        times, p = best
        found.append(RepeatedBlock(start=i, length=p, times=times, ops=list(ops[i : i + p])))
        i += times * p
    return found


def _times_repeated(signatures: Sequence[int], i: int, p: int) -> int:
    """How many times the block ``signatures[i : i + p]`` repeats in a row from ``i``: doubling
    while the next stretch equals the repeats found so far, then adding halving stretches (each a
    comparison of whole slices, so a block repeated 10,000 times takes ~28 of them, not 10,000)."""
    n = len(signatures)
    times = 1
    while i + 2 * times * p <= n and signatures[i + times * p : i + 2 * times * p] == signatures[i : i + times * p]:
        times *= 2
    step = times // 2
    while step:
        if i + (times + step) * p <= n and signatures[i + times * p : i + (times + step) * p] == signatures[i : i + step * p]:
            times += step
        step //= 2
    return times


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
                    saved=n.saved, custom=n.custom, before_cell=n.before_cell, module=n.module,
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
        merged.module_unknown += info.module_unknown
        merged.modules = merged.modules or info.modules
        merged.depth = max(merged.depth, info.depth)
    return merged


__all__ = ["MAX_PERIOD", "MIN_REPEATS", "GraphInfo", "GraphNode", "RepeatedBlock", "find_repeats", "merge_graphs", "node_signatures", "topological_order"]
