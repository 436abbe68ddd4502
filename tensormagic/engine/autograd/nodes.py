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
    pass after the walk), and how many op nodes were made while module calls were not recorded.
    ``kinds``: what the walk knows of each node's type."""
    nodes: list[GraphNode] = []
    append = nodes.append
    first = first_seq if first_seq is not None else -1
    starts = getattr(lines, "starts", None)  # LineSpans: bisect inline (one call fewer per node)
    span_lines = getattr(lines, "lines", None)
    line_of = lines.line_of if lines is not None else None
    n_source = len(source_lines)
    empty: tuple[int, list[str]] = (0, [])
    codes: dict[int, str] = {}
    owner_of = modules.owner_of if modules is not None and not modules.empty else None  # no module call: no lookup per node
    lowest = (modules.points[0] if modules.points else None) if owner_of is None and modules is not None else None
    params = modules.params if modules is not None else {}
    unknown = 0
    for i, obj in enumerate(objects):
        kind = kinds[i]
        line = None
        before = False
        shape = None
        module = None
        leaf = leaves.get(i)
        if leaf is not None:
            module = params.get(id(leaf))
            name = names.get(id(leaf))
            try:
                shape = list(leaf.shape)
            except Exception:  # noqa: BLE001 - nested tensors have no single shape
                shape = None
            if name:
                line = leaf_lines.get(name)
        else:
            name = grad_fn_names.get(id(obj))
            if not kind.leaf:
                try:
                    seq = obj._sequence_nr()
                except Exception:  # noqa: BLE001 - nodes without a sequence number
                    seq = None
                if seq is not None and seq < first:
                    before = True
                elif seq is not None and owner_of is not None:
                    owner = owner_of(seq)
                    if owner >= 0:
                        module = owner
                    elif owner == UNKNOWN:
                        unknown += 1
                elif seq is not None and modules is not None and (lowest is None or seq < lowest):
                    unknown += 1  # what owner_of says of a node before the first breakpoint
                if before or seq is None:
                    pass
                elif starts is not None:
                    k = bisect.bisect_right(starts, seq) - 1
                    line = span_lines[k] if k >= 0 else None  # type: ignore[index]
                elif line_of is not None:
                    line = line_of(seq)
                if line is None and name and not before:
                    line = leaf_lines.get(name.split(", ")[0])
        code = None
        if line is not None and 0 < line <= n_source:
            code = codes.get(line)
            if code is None:
                code = codes[line] = source_lines[line - 1].strip()
        nbytes, saved_names = saved_at.get(i, empty)
        append(GraphNode(i, kind.op, "leaf" if leaf is not None else "op", name, line, code, inputs[i], shape, nbytes, list(saved_names), kind.custom is not None, before, module))
    return nodes, unknown


__all__ = ["plain_nodes"]
