"""The magic's own passes during a cell: ``--of`` outputs, missing gradients and Jacobians.

Each runs before the cell's own backward call frees its graph, through
:class:`~tensormagic.engine.autograd.extra.ExtraWork`, which refuses any pass that would run user
code again and keeps the total under the time budget.
"""

from __future__ import annotations

from typing import Any

import torch

from tensormagic.engine.autograd.extra import ExtraWork
from tensormagic.engine.autograd.jacobian import jacobian
from tensormagic.engine.autograd.lines import LineSpans
from tensormagic.engine.autograd.naming import CellNames
from tensormagic.engine.autograd.options import AutogradOptions
from tensormagic.engine.autograd.outputs import evaluate, of_tensor
from tensormagic.engine.autograd.records import CallRecord
from tensormagic.engine.autograd.report import JacobianInfo
from tensormagic.engine.autograd.source import CellSource
from tensormagic.engine.autograd.walk import Walk


class OwnPasses:
    """What the options ask the magic to compute itself, with what it computed so far."""

    def __init__(self, options: AutogradOptions, namespace: dict[str, Any], names: CellNames, lines: LineSpans | None, cell: CellSource, extra: ExtraWork) -> None:
        self.options = options
        self.namespace = namespace
        self.names = names
        self.lines = lines
        self.cell = cell
        self.extra = extra
        self.of_records: dict[str, CallRecord] = {}
        self.jacobians: list[JacobianInfo] = []
        self._jacobian_done: set[str] = set()
        self.notes: list[str] = []

    def before_call(self, record: CallRecord, walk: Walk, roots: list[torch.Tensor], seeds: list[Any]) -> None:
        wanted = [e for e in self.options.of if e not in self.of_records]
        jacobians = self.options.jacobian and any(r.grad_fn is not None and r.numel() > 1 and info.name not in self._jacobian_done for r, info in zip(roots, record.roots))
        if not (wanted or jacobians or (record.kind == "grad" and record.inputs_only)):
            return  # nothing to do for this call (a training loop's calls, mostly)
        if walk.reused:
            walk = self.extra.walk_of(roots[0], self.names, self.lines, self.cell) if len(roots) == 1 else walk  # extra passes judge a full walk
        for expr in self.options.of:
            if expr not in self.of_records:
                try:
                    value = of_tensor(expr, evaluate(expr, self.namespace))
                except Exception:  # noqa: BLE001 - not there yet: tried again after the cell
                    continue
                self.of_records[expr] = self.compute(expr, value, "--of, before the cell's backward")
        if record.kind == "grad" and record.inputs_only:
            extra = self.extra.missing_grads(record, walk, roots, seeds)
            if extra:
                self.notes.append(
                    f"the cell's torch.autograd.grad did not ask for {extra} of the leaves: the magic computed their gradients "
                    "in one extra backward pass (graph retained, .grad untouched)"
                )
        if self.options.jacobian:
            for r, info in zip(roots, record.roots):
                if r.grad_fn is not None and r.numel() > 1 and info.name not in self._jacobian_done:
                    self._jacobian_done.add(info.name or "?")
                    self._jacobian(info.name or "output", r, walk)

    def _jacobian(self, name: str, output: torch.Tensor, walk: Walk) -> None:
        leaves = [(walk.info.nodes[i].name or f"leaf{list(t.shape)}", t) for i, t in walk.leaves.items()]
        self.jacobians += jacobian(name, output, leaves, self.options.jacobian_budget, self.extra, walk)

    def compute(self, name: str, output: torch.Tensor, source: str) -> CallRecord:
        walk = self.extra.walk_of(output, self.names, self.lines, self.cell)
        record = self.extra.gradients(name, output, walk, self.names, source)
        if self.options.jacobian and output.numel() > 1 and name not in self._jacobian_done:
            self._jacobian_done.add(name)
            self._jacobian(name, output, walk)
        return record


__all__ = ["OwnPasses"]
