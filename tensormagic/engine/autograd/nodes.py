"""A walk's live node objects as plain :class:`~.graph.GraphNode` s: names, cell lines, code, modules.

:func:`plain_nodes` runs once after :func:`~.walk.walk_graph` has visited the graph: each node
gets the variable that holds its output (or the leaf's name), the cell line that was running
when torch made it (its sequence number looked up in :class:`~.lines.LineSpans`), that line's
source, and the module call that made it (:class:`~.modules.ModuleTable`).  It reads no tensor
values and runs no user code.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from itertools import count, repeat
from typing import Any, Protocol

import torch

from tensormagic.engine.autograd.graph import GraphNode
from tensormagic.engine.autograd.lines import Lines
from tensormagic.engine.autograd.modules import UNKNOWN, ModuleTable


class NodeKind(Protocol):
    """What the walk knows of a node type (``walk._Kind``)."""

    op: str
    leaf: bool
    custom: str | None


def plain_nodes(
    objects: list[Any],
    kinds: Sequence[NodeKind],
    inputs: list[list[int]],
    leaves: dict[int, torch.Tensor],
    saved_at: dict[int, tuple[int, list[str]]],
    names: Mapping[int, str],
    grad_fn_names: Mapping[int, str],
    lines: Lines | None,
    leaf_lines: Mapping[str, int],
    source_lines: Sequence[str],
    first_seq: int | None,
    modules: ModuleTable | None = None,
) -> tuple[list[GraphNode], int]:
    """The plain nodes of a walk's node objects, with names, cell lines, code and modules (one
    pass after the walk over every node as an op, then the few leaves get their own fields), and
    how many op nodes were made while module calls were not recorded.  ``kinds``: what the walk
    knows of each node's type."""
    nodes: list[GraphNode] = []
    append = nodes.append
    first = first_seq if first_seq is not None else -1
    starts = getattr(lines, "starts", None)  # LineSpans: bisect inline (one call fewer per node)
    span_lines = getattr(lines, "lines", None)
    line_of = lines.line_of if lines is not None else None
    codes: dict[int | None, str] = {k: text.strip() for k, text in enumerate(source_lines, 1)}
    owner_of = modules.owner_of if modules is not None and not modules.empty else None  # no module call: no lookup per node
    lowest = (modules.points[0] if modules.points else None) if owner_of is None and modules is not None else None
    unknown = 0
    fn_names: Any = map(grad_fn_names.get, map(id, objects)) if grad_fn_names else repeat(None)
    no_saved = (0, None)
    saved_of: Any = map(saved_at.get, range(len(objects)), repeat(no_saved)) if saved_at else repeat(no_saved)
    for i, obj, kind, name, ins, (nbytes, saved_names) in zip(count(), objects, kinds, fn_names, inputs, saved_of):
        line = None
        before = False
        module = None
        if not kind.leaf:
            try:
                seq = obj._sequence_nr()
            except Exception:  # noqa: BLE001 - nodes without a sequence number
                seq = None
            if seq is None:
                pass
            elif seq < first:
                before = True
            else:
                if owner_of is not None:
                    owner = owner_of(seq)
                    if owner >= 0:
                        module = owner
                    elif owner == UNKNOWN:
                        unknown += 1
                elif modules is not None and (lowest is None or seq < lowest):
                    unknown += 1  # what owner_of says of a node before the first breakpoint
                if starts is not None:
                    k = bisect.bisect_right(starts, seq) - 1
                    line = span_lines[k] if k >= 0 else None  # type: ignore[index]
                elif line_of is not None:
                    line = line_of(seq)
            if line is None and name and not before:
                line = leaf_lines.get(name.split(", ")[0])
        append(GraphNode(i, kind.op, "op", name, line, codes.get(line), ins, None, nbytes, saved_names or [], kind.custom is not None, before, module))
    if leaves:
        params = modules.params if modules is not None else {}
        for i, leaf in leaves.items():
            nodes[i] = _leaf_node(nodes[i], leaf, names, params, leaf_lines, codes)
    return nodes, unknown


def _leaf_node(node: GraphNode, leaf: torch.Tensor, names: Mapping[int, str], params: Mapping[int, int], leaf_lines: Mapping[str, int], codes: Mapping[int | None, str]) -> GraphNode:
    """A leaf's node: named after its tensor, with its shape, the line that assigned it and the
    module holding it (in place of the op-node fields ``node`` got)."""
    name = names.get(id(leaf))
    try:
        shape: list[int] | None = list(leaf.shape)
    except Exception:  # noqa: BLE001 - nested tensors have no single shape
        shape = None
    line = leaf_lines.get(name) if name else None
    node.kind, node.name, node.shape, node.line, node.code, node.module = "leaf", name, shape, line, codes.get(line), params.get(id(leaf))
    return node


__all__ = ["plain_nodes"]
