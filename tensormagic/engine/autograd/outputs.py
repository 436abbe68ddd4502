"""Which outputs the report differentiates, and their names.

``--of`` first; else what the cell called ``backward`` / ``torch.autograd.grad`` on (the last call
of each output: a training loop is one output called many times); else the cell's last
expression; else the tensors it assigned that nothing else it assigned was computed from (the
graph's roots).  The last two, and ``--of``, need the magic's own pass (:mod:`.extra`).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from typing import Any

import torch

from tensormagic.engine.autograd.options import AutogradUsageError
from tensormagic.engine.autograd.recorder import Recorder
from tensormagic.engine.autograd.records import CallRecord
from tensormagic.engine.autograd.report import OutputInfo
from tensormagic.engine.autograd.source import CellSource
from tensormagic.engine.autograd.walk import walk_graph

#: Separate outputs reported at most.
MAX_OUTPUT_GROUPS = 8


def evaluate(expr: str, namespace: Mapping[str, Any]) -> Any:
    """``expr`` in the user's namespace; every failure as an AutogradUsageError."""
    try:
        return eval(expr, namespace if isinstance(namespace, dict) else dict(namespace))
    except NameError as exc:
        raise AutogradUsageError(f"{expr!r} is not defined after the cell ran ({exc})") from None
    except Exception as exc:  # noqa: BLE001
        raise AutogradUsageError(f"evaluating {expr!r} raised {type(exc).__name__}: {exc}") from None


def of_tensor(expr: str, value: Any) -> torch.Tensor:
    """The tensor ``--of expr`` names, or an AutogradUsageError saying why it cannot be one."""
    if not isinstance(value, torch.Tensor):
        raise AutogradUsageError(f"--of {expr}: {expr} is a {type(value).__name__}, not a tensor")
    if value.grad_fn is None:
        why = "it does not require grad" if not value.requires_grad else "it is a leaf (its gradient with respect to itself is 1)"
        raise AutogradUsageError(f"--of {expr}: {expr} has no graph to differentiate ({why})")
    return value


def last_of_each_output(recorder: Recorder) -> list[CallRecord]:
    """The last call of each group of the cell's calls, in the order of their last call."""
    groups: dict[tuple[Any, ...], CallRecord] = {}
    for call in recorder.calls:
        key = recorder.group_of(call)
        groups.pop(key, None)
        groups[key] = call
    return list(groups.values())[-MAX_OUTPUT_GROUPS:]


def graph_roots(assigned: Mapping[str, int], namespace: Mapping[str, Any], names: Mapping[int, str]) -> list[tuple[str, torch.Tensor]]:
    """Tensors the cell assigned that have a graph and feed no other tensor it assigned."""
    cands = [(n, namespace.get(n)) for n, _ in sorted(assigned.items(), key=lambda kv: kv[1])]
    tensors = [(n, t) for n, t in cands if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    if not tensors:
        return []
    walk = walk_graph([t.grad_fn for _, t in tensors], names, saved=False)
    consumed = {j for node in walk.info.nodes for j in node.inputs}
    index = walk.node_index()
    roots = [(n, t) for n, t in tensors if index.get(id(t.grad_fn)) not in consumed]
    return roots[:MAX_OUTPUT_GROUPS]


def name_roots(record: CallRecord, cell: CellSource) -> None:
    """Name the unnamed outputs of a call after the expression of its call (``(x * 3)``,
    ``loss in train()``), or its line."""
    unnamed = [r for r in record.roots if not r.name]
    if not unnamed:
        return
    expr = cell.backward_expression(record.line) if record.line else None
    parts: list[str] = []
    if expr and len(record.roots) > 1:
        try:
            node = ast.parse(expr, mode="eval").body
            if isinstance(node, (ast.List, ast.Tuple)) and len(node.elts) == len(record.roots):
                parts = [ast.get_source_segment(expr, e) or "" for e in node.elts]
        except SyntaxError:
            pass
    for i, r in enumerate(record.roots):
        if r.name:
            continue
        base = parts[i] if parts and parts[i] else (expr if expr and len(record.roots) == 1 else None)
        if base is None:
            base = f"output {i + 1}" + (f" of line {record.line}" if record.line else "")
        r.name = f"{base} in {record.function}()" if record.function else base


def output_infos(records: list[CallRecord], sources: list[str], recorder: Recorder, cell: CellSource, seed_name: Callable[[int], str | None]) -> list[OutputInfo]:
    """One :class:`OutputInfo` per output of the chosen records."""
    out: list[OutputInfo] = []
    for record, source in zip(records, sources):
        group = recorder.group_of(record) if record.kind != "computed" else None
        calls = sum(c.repeats for c in recorder.calls if recorder.group_of(c) == group) if group else 1
        for r in record.roots:
            name = r.name or "output"
            line = cell.assigned.get(name) if name in cell.assigned else record.line
            out.append(
                OutputInfo(
                    name=name, shape=r.shape, dtype=r.dtype, value=r.value, source=source, line=line, call_line=record.line if record.kind != "computed" else None,
                    weighted=r.seeded, seed=seed_name(r.seed_key) if r.seed_key is not None else None,
                    calls=calls, error=record.error,
                )
            )
    return out


__all__ = ["MAX_OUTPUT_GROUPS", "evaluate", "graph_roots", "last_of_each_output", "name_roots", "of_tensor", "output_infos"]
