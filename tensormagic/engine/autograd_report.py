"""``%%autograd``'s engine: the report of every derivative a cell computes, and why some are missing.

Pure (torch and numpy only).  :class:`AutogradSession` wraps one cell run::

    session = AutogradSession(namespace, source, filename, AutogradOptions())
    with session.recorder:
        value = run_cell_code(...)
    report = session.report(value)

The report is a dataclass of plain values: no tensor, graph node or hook survives the cell.
"""

from __future__ import annotations

import ast
import math
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from tensormagic.engine.autograd_graph import GraphInfo, GraphNode, RepeatedBlock, walk_graph
from tensormagic.engine.stats import cpu_moments
from tensormagic.engine.autograd_source import CellSource, analyse_source
from tensormagic.engine.autograd_trace import (
    _ORIG_GRAD,
    AutogradRecorder,
    CallRecord,
    GradSummary,
    Target,
    analyse,
    summarise,
    turns_non_finite,
)
from tensormagic.engine.namespace import HIDDEN_NAMES
from tensormagic.engine.report import Report

#: Jacobians are computed up to this many entries (outputs x inputs) unless told otherwise.
DEFAULT_JACOBIAN_BUDGET = 1_000_000
#: Jacobians up to this many entries keep their values in the report; bigger ones a summary.
JACOBIAN_VALUES = 4_096
#: A gradient norm below this (or below VANISHING_RELATIVE x the largest) is flagged as vanishing.
VANISHING = 1e-7
VANISHING_RELATIVE = 1e-6
#: A gradient norm above this is flagged as exploding.
EXPLODING = 1e3
#: Inputs --check runs gradcheck on, at most (elements, all inputs together).
CHECK_MAX_ELEMENTS = 256
#: Separate outputs reported at most (a training loop calls backward on "loss" many times: one).
MAX_OUTPUT_GROUPS = 8

STATUSES = ("ok", "no_requires_grad", "non_leaf", "detached", "unused", "integer_dtype", "non_finite")


class AutogradUsageError(ValueError):
    """A mistake in the magic's options (the glue turns it into a UsageError)."""


# ---------------------------------------------------------------------------------------------
# the report


@dataclass
class OutputInfo:
    """A tensor the gradients are taken of."""

    name: str
    shape: list[int]
    dtype: str
    value: Any  # a number for one-element outputs
    source: str  # "--of" | "backward" | "torch.autograd.grad" | "last expression" | "graph root"
    line: int | None = None
    weighted: bool = False  # backward got a gradient: the gradients are vector-Jacobian products


@dataclass
class GradientRow:
    """d(of)/d(wrt), or why there is none."""

    wrt: str
    of: str
    status: str
    grad: Any  # a number, a nested list (small), a summary dict (big) or None
    shape: list[int] | None
    dtype: str | None
    norm: float | None
    reason: str
    fix: str
    kind: str  # "leaf" | "intermediate" | "tensor"
    line: int | None = None  # where wrt was made in the cell
    label: str = "gradient"  # or "vector-Jacobian product with ones" / "... with the gradient passed to backward"
    change: str | None = None  # e.g. "w.grad += 3.0, now 13.0"
    nan: int = 0
    inf: int = 0


@dataclass
class CostInfo:
    """What the gradients cost."""

    forward_s: float
    backward_s: float
    saved_bytes: int
    ratio: float | None  # backward / forward
    backward_source: str  # "the cell's backward" | "the magic's own backward pass" | "none"
    backward_calls: int = 0
    grad_calls: int = 0
    magic_s: float = 0.0  # time the magic spent analysing, inside the cell
    report_s: float = 0.0  # time building the report after the cell
    flops_forward: int | None = None
    flops_backward: int | None = None


@dataclass
class HealthRow:
    """One parameter's gradient in the gradient-flow chart."""

    name: str
    shape: list[int]
    grad_norm: float
    param_norm: float
    ratio: float | None
    flag: str | None  # "NaN/inf" | "vanishing" (also exactly zero) | "exploding"


@dataclass
class JacobianInfo:
    """d(of)/d(wrt) in full: shape of + shape of wrt."""

    of: str
    wrt: str
    shape: list[int]
    entries: int
    values: Any  # nested lists up to JACOBIAN_VALUES entries, else None
    summary: dict[str, float] | None = None


@dataclass
class CheckInfo:
    """The result of ``torch.autograd.gradcheck`` in float64 on copies of the inputs."""

    ok: bool | None
    message: str
    inputs: list[str] = field(default_factory=list)


@dataclass(repr=False)
class AutogradReport(Report):
    """Every derivative the cell computed (see ``%%autograd?``)."""

    outputs: list[OutputInfo]
    gradients: list[GradientRow]
    graph: GraphInfo
    cost: CostInfo
    health: list[HealthRow] = field(default_factory=list)
    jacobian: list[JacobianInfo] = field(default_factory=list)
    check: CheckInfo | None = None
    notes: list[str] = field(default_factory=list)
    message: str | None = None  # set when there is nothing to differentiate
    non_finite: dict[str, Any] | None = None  # where a NaN/inf first appears: {op, line, code, where}

    PANEL: ClassVar[str] = "tensormagic.render.autograd_panel:autograd_panel"

    def summary(self) -> str:
        if self.message:
            return self.message
        outs = ", ".join(o.name for o in self.outputs)
        ok = sum(1 for g in self.gradients if g.status in ("ok", "non_leaf"))
        return f"gradients of {outs}: {ok} computed, {len(self.gradients) - ok} missing or flagged"

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["graph"] = {
            "nodes": d["graph"]["nodes"],
            "edges": d["graph"]["edges"],
            "roots": d["graph"]["roots"],
            "order": d["graph"]["order"],
            "repeats": d["graph"]["repeats"],
            "saved_bytes": d["graph"]["saved_bytes"],
            "truncated": d["graph"]["truncated"],
        }
        if not self.jacobian:
            d.pop("jacobian")
        return d

    def grad(self, wrt: str, of: str | None = None) -> Any:
        """The gradient value of ``wrt`` (of the first output, or ``of``)."""
        for row in self.gradients:
            if row.wrt == wrt and (of is None or row.of == of):
                return row.grad
        raise KeyError(wrt)

    def row(self, wrt: str, of: str | None = None) -> GradientRow:
        """The row of ``wrt`` (of the first output, or ``of``)."""
        for row in self.gradients:
            if row.wrt == wrt and (of is None or row.of == of):
                return row
        raise KeyError(wrt)


# ---------------------------------------------------------------------------------------------
# options and the session


@dataclass
class AutogradOptions:
    """The magic's options (see the magic's help)."""

    of: list[str] = field(default_factory=list)
    wrt: list[str] = field(default_factory=list)
    check: bool = False
    flops: bool = False
    jacobian: bool = True
    jacobian_budget: int = DEFAULT_JACOBIAN_BUDGET
    lines: bool = True
    locate_nan: bool = False


def split_names(text: str) -> list[str]:
    """``"a, b[0, 1], c"`` -> ``["a", "b[0, 1]", "c"]`` (commas inside brackets stay)."""
    out: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(current.strip())
            current = ""
        else:
            current += ch
    out.append(current.strip())
    return [o for o in out if o]


def check_expressions(exprs: Sequence[str], option: str) -> None:
    """Raise AutogradUsageError unless every expression parses."""
    for expr in exprs:
        try:
            ast.parse(expr, mode="eval")
        except SyntaxError:
            raise AutogradUsageError(f"{option} {expr!r} is not a variable name or expression") from None


class AutogradSession:
    """One ``%%autograd`` run: the recorder to run the cell in, then :meth:`report`."""

    def __init__(self, namespace: dict[str, Any], source: str, filename: str, options: AutogradOptions | None = None, hidden: frozenset[str] | set[str] = frozenset()) -> None:
        self.namespace = namespace
        self.options = options or AutogradOptions()
        self.hidden = set(hidden) | set(HIDDEN_NAMES)
        self.cell: CellSource = analyse_source(source)
        # what each name was bound to before the cell (ids only): names the cell rebinds in ways
        # its source does not show (%time x = ..., exec, globals()) still count as assigned
        self._before = {k: id(v) for k, v in namespace.items()}
        self.of_records: dict[str, CallRecord] = {}
        self.notes: list[str] = []
        self.recorder = AutogradRecorder(
            filename,
            self.names_of,
            source_lines=self.cell.lines,
            leaf_lines=self.cell.assigned,
            lines=self.options.lines,
            flops=self.options.flops,
            locate_nan=self.options.locate_nan,
            before_call=self._before_call,
            check=self.options.check,
        )
        self.jacobians: list[JacobianInfo] = []
        self._jacobian_done: set[str] = set()

    # -- names --------------------------------------------------------------------------------

    def assigned(self) -> dict[str, int]:
        """Names the cell bound -> their line (0 when the source does not show it), in cell order."""
        out = dict(self.cell.assigned)
        before = self._before
        for name, value in list(self.namespace.items()):
            if name not in out and before.get(name) != id(value) and not name.startswith("_") and name not in self.hidden:
                out[name] = 0
        return out

    def names_of(self) -> tuple[dict[int, str], dict[int, str], list[Any], dict[int, Any]]:
        """id(tensor) -> name, id(grad_fn) -> names, the grad_fns to keep alive, id -> tensor."""
        tensor_names: dict[int, str] = {}
        grad_fn_names: dict[int, str] = {}
        keep: list[Any] = []
        tensors: dict[int, torch.Tensor] = {}
        used = self.cell.loaded | set(self.cell.assigned)
        ns = self.namespace
        # names the cell uses first, so that an alias the cell never mentions does not win
        names = sorted((n for n in list(ns) if not n.startswith("_") and n not in self.hidden), key=lambda n: n not in used)
        for name in names:
            obj = ns.get(name)
            if isinstance(obj, torch.Tensor):
                tensor_names.setdefault(id(obj), name)
                tensors.setdefault(id(obj), obj)
                if obj.grad_fn is not None:
                    gf = obj.grad_fn
                    keep.append(gf)
                    prev = grad_fn_names.get(id(gf))
                    grad_fn_names[id(gf)] = name if prev is None else f"{prev}, {name}"
            elif isinstance(obj, torch.nn.Module) and name in used:
                try:
                    for pname, p in obj.named_parameters(remove_duplicate=False):
                        tensor_names.setdefault(id(p), f"{name}.{pname}")
                except Exception:  # noqa: BLE001 - a half-built module
                    continue
            elif isinstance(obj, (list, tuple)) and name in used and 0 < len(obj) <= 10_000:
                for k, item in enumerate(obj):
                    if isinstance(item, torch.Tensor):
                        tensor_names.setdefault(id(item), f"{name}[{k}]")
                    elif isinstance(item, torch.nn.Module):
                        for pname, p in item.named_parameters(remove_duplicate=False):
                            tensor_names.setdefault(id(p), f"{name}[{k}].{pname}")
        return tensor_names, grad_fn_names, keep, tensors

    def _eval(self, expr: str) -> Any:
        try:
            return eval(expr, self.namespace)  # noqa: S307 - the user's own expression, in their namespace
        except NameError as exc:
            raise AutogradUsageError(f"{expr!r} is not defined after the cell ran ({exc})") from None
        except Exception as exc:  # noqa: BLE001
            raise AutogradUsageError(f"evaluating {expr!r} raised {type(exc).__name__}: {exc}") from None

    # -- --of and Jacobians, before the cell's backward frees the graph -------------------------

    def _before_call(self, recorder: AutogradRecorder, roots: list[torch.Tensor]) -> None:
        for expr in self.options.of:
            if expr in self.of_records:
                continue
            try:
                value = eval(expr, self.namespace)  # noqa: S307
            except Exception:  # noqa: BLE001 - not defined yet: tried again after the cell
                continue
            if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                self.of_records[expr] = self.compute(expr, value, "--of")
                self.of_records[expr].source = "--of, before the cell's backward"
        if self.options.jacobian:
            for r in roots:
                if r.numel() > 1 and r.grad_fn is not None:
                    name = self.names_of()[0].get(id(r)) or "output"
                    if name not in self._jacobian_done:
                        self._jacobian_done.add(name)
                        self._jacobian(name, r)

    def _jacobian(self, name: str, output: torch.Tensor) -> None:
        names, _, keep, _ = self.names_of()
        walk = walk_graph([output.grad_fn], names, saved=False)
        leaves = [(walk.info.nodes[i].name or f"leaf{list(t.shape)}", t) for i, t in walk.leaves.items()]
        del keep
        info, note = jacobian(name, output, leaves, self.options.jacobian_budget)
        self.jacobians += info
        if note:
            self.notes.append(note)

    def compute(self, name: str, output: torch.Tensor, source: str, grad_output: torch.Tensor | None = None) -> CallRecord:
        """The magic's own gradient computation (``retain_graph=True``: the user's graph stays usable)."""
        recorder = self.recorder
        busy = recorder._busy
        recorder._busy = True
        recorder.pause_lines(True)
        try:
            record = analyse(
                "computed",
                [output],
                [grad_output],
                [],
                self.names_of,
                line_map=recorder.line_map if self.options.lines else None,
                leaf_lines=self.cell.assigned,
                source_lines=self.cell.lines,
            )
            record._walk = None  # type: ignore[attr-defined]
            record.roots[0].name = name
            record.source = source
            if self.options.check:
                record.root_tensors = [output]
            targets = [(k, t.ref()) for k, t in record.targets.items()]
            targets = [(k, t) for k, t in targets if t is not None]
            if output.numel() != 1 and grad_output is None:
                grad_output = torch.ones_like(output)
                record.roots[0].weighted = False
                record.ones = True
            counter = None
            if self.options.flops:
                from torch.utils.flop_counter import FlopCounterMode

                counter = FlopCounterMode(display=False)
            t0 = time.perf_counter()
            with torch.enable_grad(), (counter if counter is not None else _nullcontext()):
                grads = _ORIG_GRAD([output], [t for _, t in targets], [grad_output] if grad_output is not None else None, retain_graph=True, allow_unused=True) if targets else ()
            record.seconds = time.perf_counter() - t0
            if counter is not None:
                record.flops = counter.get_total_flops()
            for (k, _), g in zip(targets, grads):
                record.grads[k] = summarise(g)
            if any(_bad(s) for s in record.grads.values() if s is not None):
                record.non_finite_at = locate_nonfinite(output, grad_output, self.names_of, record)
            if self.options.jacobian and output.numel() > 1 and name not in self._jacobian_done:
                self._jacobian_done.add(name)
                self._jacobian(name, output)
            return record
        finally:
            recorder._busy = busy
            recorder.pause_lines(False)

    # -- the report ---------------------------------------------------------------------------

    def report(self, last_value: Any = None) -> AutogradReport:
        t0 = time.perf_counter()
        rec = self.recorder
        records: list[CallRecord] = []
        outputs: list[OutputInfo] = []
        sources: list[str] = []
        if self.options.of:
            for expr in self.options.of:
                if expr not in self.of_records:
                    value = self._eval(expr)
                    if not isinstance(value, torch.Tensor):
                        raise AutogradUsageError(f"--of {expr}: {expr} is a {type(value).__name__}, not a tensor")
                    if value.grad_fn is None:
                        why = "it does not require grad" if not value.requires_grad else "it is a leaf (its gradient with respect to itself is 1)"
                        raise AutogradUsageError(f"--of {expr}: {expr} has no graph to differentiate ({why})")
                    self.of_records[expr] = self.compute(expr, value, "--of")
                records.append(self.of_records[expr])
                sources.append("--of")
        elif rec.calls:
            groups: dict[tuple[str, ...], CallRecord] = {}
            for call in rec.calls:
                key = tuple(r.name or "?" for r in call.roots) + (call.kind,)
                groups.pop(key, None)
                groups[key] = call  # the last call of each group, in order of last call
            records = list(groups.values())[-MAX_OUTPUT_GROUPS:]
            sources = ["backward" if r.kind == "backward" else "torch.autograd.grad" for r in records]
            if len(rec.calls) > len(records):
                self.notes.append(
                    f"the cell computed gradients {len(rec.calls):,} times (backward {rec.backward_calls:,}, torch.autograd.grad {rec.grad_calls:,}): "
                    "the rows show the last computation of each output; the cost adds them all up"
                )
        elif isinstance(last_value, torch.Tensor) and last_value.grad_fn is not None:
            expr = self.cell.last_expression or "last expression"
            records.append(self.compute(expr, last_value, "last expression"))
            sources.append("last expression")
        else:
            for name, t in self._graph_roots():
                records.append(self.compute(name, t, "graph root"))
                sources.append("graph root")
        for record, source in zip(records, sources):
            for i, r in enumerate(record.roots):
                name = r.name or self._unnamed_root(record, i)
                r.name = name
                line = self.cell.assigned.get(name) if name in self.cell.assigned else record.call_line
                outputs.append(OutputInfo(name, r.shape, r.dtype, r.value, source, line, r.weighted))
        rows: list[GradientRow] = []
        for record in records:
            rows += self._rows(record)
            if record.extra:
                self.notes.append(
                    f"the cell's torch.autograd.grad did not ask for {record.extra} of the leaves: the magic computed "
                    "their gradients in one extra backward pass (graph retained, .grad untouched)"
                )
        if self.options.wrt:
            rows = self._wrt_rows(rows, records)
        graph = _merge_graphs([r.walk_info for r in records])
        cost = self._cost(records)
        params = {t.name: t.ref() for r in records for t in r.targets.values() if t.kind == "leaf" and t.name}
        health = _health(rows, graph, params)
        report = AutogradReport(
            outputs=outputs,
            gradients=rows,
            graph=graph,
            cost=cost,
            health=health,
            jacobian=self.jacobians,
            notes=self.notes + [f"the magic's analysis hit a problem: {e}" for e in rec.errors],
        )
        if not records:
            report.message = self._nothing_message()
        report.non_finite = self._non_finite(records, rows)
        if self.options.check:
            report.check = self._check(records)
        report.cost.report_s = time.perf_counter() - t0
        return report

    def _unnamed_root(self, record: CallRecord, i: int) -> str:
        line = record.call_line
        expr = self.cell.backward_expression(line)
        if expr:
            return expr
        return f"output {i + 1}" if line is None else f"output of line {line}"

    def _graph_roots(self) -> list[tuple[str, torch.Tensor]]:
        """Tensors the cell assigned that have a graph and feed no other assigned tensor."""
        cands = []
        for name, line in sorted(self.assigned().items(), key=lambda kv: kv[1]):
            obj = self.namespace.get(name)
            if isinstance(obj, torch.Tensor) and obj.grad_fn is not None:
                cands.append((name, obj))
        if not cands:
            return []
        names, _, keep, _ = self.names_of()
        walk = walk_graph([t.grad_fn for _, t in cands], names, saved=False)
        consumed = {j for node in walk.info.nodes for j in node.inputs}
        index = {id(o): i for i, o in enumerate(walk.node_objects)}
        roots = [(n, t) for n, t in cands if index.get(id(t.grad_fn)) not in consumed]
        del keep, walk
        return roots[:MAX_OUTPUT_GROUPS]

    def _nothing_message(self) -> str:
        tensors = [n for n in self.assigned() if isinstance(self.namespace.get(n), torch.Tensor)]
        if not tensors:
            return "the cell made no tensor, so there is no gradient to explain; %%autograd explains cells that compute with tensors (and ideally call .backward())"
        return (
            f"no tensor of this cell needs a gradient ({', '.join(tensors[:5])} do not require grad): "
            "create the inputs to differentiate with requires_grad=True, e.g. w = torch.tensor(4., requires_grad=True)"
        )

    # -- rows ---------------------------------------------------------------------------------

    def _graph_names(self, record: CallRecord) -> set[str]:
        names = {t.name for t in record.targets.values() if t.name}
        names |= {r.name for r in record.roots if r.name}
        names |= {n.split(".")[0].split("[")[0] for n in list(names)}
        return names

    def _rows(self, record: CallRecord) -> list[GradientRow]:
        of = ", ".join(r.name or "?" for r in record.roots)
        weighted = any(r.weighted for r in record.roots)
        ones = record.ones
        label = "gradient"
        if weighted:
            label = "vector-Jacobian product with the gradient passed to backward"
        elif ones or any(math.prod(r.shape) != 1 for r in record.roots):
            label = "vector-Jacobian product with ones (the gradient of the sum)"
        rows: list[GradientRow] = []
        seen: set[str] = set()
        leaf_changes = self._changes(record)
        for key, target in record.targets.items():
            name = target.name or f"unnamed {target.kind}"
            summary = record.grads.get(key)
            if target.name:
                seen.add(target.name)
            rows.append(self._target_row(record, target, name, of, summary, label, leaf_changes.get(key)))
        rows += self._other_rows(record, of, seen)
        order = {"ok": 0, "non_finite": 0, "non_leaf": 1}
        info = record.walk_info
        # leaves in graph order, inputs first (a model's layers in order), then the rest by line
        leaf_pos = {info.nodes[i].name: -p for p, i in enumerate(info.order) if info.nodes[i].kind == "leaf" and info.nodes[i].name}
        rows.sort(key=lambda r: (order.get(r.status, 2), r.line if r.line is not None else 10**9, leaf_pos.get(r.wrt, 0)))
        return rows

    def _target_row(self, record: CallRecord, target: Target, name: str, of: str, summary: GradSummary | None, label: str, change: str | None) -> GradientRow:
        line = self.cell.assigned.get(target.name) if target.name else None
        t = target.ref()
        shape = list(t.shape) if t is not None else None
        dtype = str(t.dtype) if t is not None else None
        if summary is None:
            if record.inputs_only and target.key not in record.asked:
                reason = f"the cell's {'backward' if record.kind == 'backward' else 'torch.autograd.grad'} call listed other inputs, so no gradient was computed for {name}"
                fix = f"add {name} to inputs=... to get its gradient"
            else:
                reason = f"no gradient reached {name}: {of} does not depend on it through differentiable ops (the gradient is zero or undefined)"
                fix = "check that it is really used in computing the output"
            return GradientRow(name, of, "unused", None, shape, dtype, None, reason, fix, target.kind, line, label, change)
        plain = summary.plain()
        grad = _grad_value(plain)
        nan, inf = plain.get("nan", 0), plain.get("inf", 0)
        norm = plain.get("norm")
        if nan or inf:
            status = "non_finite"
            reason = f"the gradient of {of} with respect to {name} holds {nan:,} NaN and {inf:,} inf value{'s' if nan + inf != 1 else ''}"
            fix = "look at the op where it first appears (Health tab): log/sqrt/division of 0, exp overflow or a 0/0; clamp the input (x.clamp_min(1e-12)), add an epsilon, or use a stable op (torch.logsumexp, F.log_softmax)"
            kind = target.kind
        elif target.kind == "intermediate" and not target.retains_grad:
            status = "non_leaf"
            reason = f"{name} is an intermediate result (made from other tensors), not a leaf: its gradient is shown here, but {name}.grad stays None after backward"
            fix = f"call {name}.retain_grad() before backward to keep {name}.grad"
            kind = "intermediate"
        else:
            status = "ok"
            reason = ""
            fix = ""
            kind = target.kind
            if target.kind == "intermediate":
                reason = f"{name}.retain_grad() was called, so {name}.grad keeps this gradient"
        return GradientRow(name, of, status, grad, shape, dtype, norm, reason, fix, kind, line, label, change, nan, inf)

    def _other_rows(self, record: CallRecord, of: str, seen: set[str]) -> list[GradientRow]:
        """Tensors the cell uses that have no gradient: not requiring grad, detached, unused, integer."""
        rows: list[GradientRow] = []
        graph_names = self._graph_names(record)
        root_names = {r.name for r in record.roots}
        saved = {n for node in record.walk_info.nodes for n in node.saved}
        # a name is used with the graph when a statement reads it together with a graph name
        with_graph: set[str] = set()
        for st in self.cell.statements:
            if (st.loads | st.stores) & graph_names:
                with_graph |= st.loads
        candidates = [n for n in self.cell.loaded | set(self.assigned()) if n not in seen and n not in root_names and not n.startswith("_") and n not in self.hidden]
        for name in sorted(candidates, key=lambda n: self.cell.assigned.get(n, 0)):
            obj = self.namespace.get(name)
            if isinstance(obj, torch.nn.Module):
                rows += self._module_rows(name, obj, record, of, seen)
                continue
            if not isinstance(obj, torch.Tensor):
                continue
            line = self.cell.assigned.get(name)
            code = self.cell.code(line)
            shape, dtype = list(obj.shape), str(obj.dtype)
            cut = self.cell.cuts.get(name)
            used = name in saved or name in with_graph
            if obj.requires_grad:
                if obj.grad_fn is not None and obj.grad_fn is not None and name in graph_names:
                    continue
                how = ""
                for other, c in self.cell.cuts.items():
                    if name in c.sources:
                        how = f"; it is only used through {_cut_words(c.how)} at line {c.line} ({other} = …)"
                        break
                reason = f"{name} requires grad but {of} does not depend on it: it is not used in computing {of}{how}"
                if record.kind == "backward" and obj.is_leaf:
                    reason += f"; {name}.grad is left as it was"
                fix = f"use {name} in computing {of}, or set {name}.requires_grad_(False) if it should not be trained"
                rows.append(GradientRow(name, of, "unused", None, shape, dtype, None, reason, fix, "leaf" if obj.is_leaf else "intermediate", line))
                continue
            if cut is not None and (cut.sources & graph_names or any(_requires_grad(self.namespace.get(s)) for s in cut.sources)):
                src = ", ".join(sorted(s for s in cut.sources if _requires_grad(self.namespace.get(s)) or s in graph_names)) or "its inputs"
                reason = f"{name} was made {_cut_words(cut.how)} at line {cut.line} ({cut.code}): it is cut from the graph, so no gradient flows through it back to {src}"
                fix = {
                    "detach": f"drop .detach() where the gradient should flow through {name}; keep it only for values that must not be trained",
                    "data": "use the tensor itself instead of .data (which hides the operation from autograd)",
                    "no_grad": f"compute {name} outside the torch.no_grad() block if gradients should flow through it",
                }[cut.how]
                rows.append(GradientRow(name, of, "detached", None, shape, dtype, None, reason, fix, "tensor", line))
                continue
            if not used:
                continue
            if not (obj.is_floating_point() or obj.is_complex()):
                reason = f"{name} has dtype {obj.dtype}: only floating-point and complex tensors can have gradients, so autograd treats it as a constant"
                fix = f"make it floating point if you need d{of}/d{name}: {name} = {name}.float().requires_grad_() (or torch.tensor(3.0) instead of torch.tensor(3))"
                rows.append(GradientRow(name, of, "integer_dtype", None, shape, dtype, None, reason, fix, "tensor", line))
                continue
            use = next((st.line for st in self.cell.statements if name in st.loads and (st.loads | st.stores) & graph_names), None)
            where = f" at line {use} ({self.cell.code(use)})" if use else ""
            reason = f"{name} is used in computing {of}{where} but has requires_grad=False, so autograd computes no gradient for it (normal for input data and targets)"
            fix = f"to get d{of}/d{name}, create it with requires_grad=True (e.g. {name} = torch.tensor(..., requires_grad=True)) or call {name}.requires_grad_() before using it"
            code = self.cell.code_without_comment(line) if line else code
            if line and code and "torch.tensor(" in code and "requires_grad" not in code:
                fix = f"to get d{of}/d{name}, create it with requires_grad=True: {code.rstrip(')')}, requires_grad=True)" if code.endswith(")") and code.count("(") == code.count(")") else fix
            rows.append(GradientRow(name, of, "no_requires_grad", None, shape, dtype, None, reason, fix, "tensor", line))
        return rows

    def _module_rows(self, name: str, module: torch.nn.Module, record: CallRecord, of: str, seen: set[str]) -> list[GradientRow]:
        rows = []
        for pname, p in module.named_parameters():
            full = f"{name}.{pname}"
            if full in seen:
                continue
            if p.requires_grad:
                reason = f"{full} requires grad but {of} does not depend on it (this part of {name} is not used in computing {of})"
                if record.kind == "backward":
                    reason += f"; {full}.grad is left as it was"
                fix = f"use it, or freeze it with {full}.requires_grad_(False)"
                rows.append(GradientRow(full, of, "unused", None, list(p.shape), str(p.dtype), None, reason, fix, "leaf", self.cell.assigned.get(name)))
        if len(rows) > 200:
            rows = rows[:200]
        return rows

    def _wrt_rows(self, rows: list[GradientRow], records: list[CallRecord]) -> list[GradientRow]:
        keep: list[GradientRow] = []
        for expr in self.options.wrt:
            found = [r for r in rows if r.wrt == expr]
            if found:
                keep += found
                continue
            value = self._eval(expr)
            if not isinstance(value, torch.Tensor):
                raise AutogradUsageError(f"--wrt {expr}: {expr} is a {type(value).__name__}, not a tensor")
            for record in records:
                of = ", ".join(r.name or "?" for r in record.roots)
                if value.requires_grad:
                    reason = f"{expr} requires grad but {of} does not depend on it"
                    keep.append(GradientRow(expr, of, "unused", None, list(value.shape), str(value.dtype), None, reason, f"use {expr} in computing {of}", "tensor"))
                elif not (value.is_floating_point() or value.is_complex()):
                    keep.append(GradientRow(expr, of, "integer_dtype", None, list(value.shape), str(value.dtype), None, f"{expr} has dtype {value.dtype}: integer tensors cannot have gradients", f"use {expr}.float()", "tensor"))
                else:
                    keep.append(GradientRow(expr, of, "no_requires_grad", None, list(value.shape), str(value.dtype), None, f"{expr} has requires_grad=False, so autograd computes no gradient for it", f"create it with requires_grad=True or call {expr}.requires_grad_()", "tensor"))
        return keep

    def _changes(self, record: CallRecord) -> dict[int, str]:
        """What the cell's backward calls added to each leaf's .grad: ``w.grad += 3.0, now 13.0``."""
        if record.kind != "backward":
            return {}
        out: dict[int, str] = {}
        calls = [c for c in self.recorder.calls if c.kind == "backward"]
        for key, target in record.targets.items():
            if target.kind != "leaf":
                continue
            t = target.ref()
            name = target.name or "leaf"
            first = next((c.targets[key] for c in calls if key in c.targets), target)
            added = [c.grads.get(key) for c in calls if c.grads.get(key) is not None]
            if t is None or not added:
                continue
            now = summarise(t.grad) if t.grad is not None else None
            now_plain = now.plain() if now is not None else None
            small = all(a.values is not None for a in added)
            if small:
                total = added[0].values.detach().cpu().double().clone()
                for a in added[1:]:
                    total = total + a.values.detach().cpu().double()
                add_text = _short(total.tolist() if total.dim() else total.item())
            else:
                add_text = f"a gradient of norm {_short(added[-1].plain().get('norm'))}" + (f" ({len(added)} backward calls)" if len(added) > 1 else "")
            now_text = "None (zeroed by the cell)" if now_plain is None else (_short(now_plain["value"]) if now_plain.get("value") is not None else f"norm {_short(now_plain.get('norm'))}")
            if first.had_grad:
                out[key] = f"{name}.grad += {add_text}, now {now_text}"
            else:
                out[key] = f"{name}.grad was None, now {now_text}" + ("" if now_plain is not None and len(added) == 1 else f" (added {add_text})")
        return out

    # -- cost, NaN, check ---------------------------------------------------------------------

    def _cost(self, records: list[CallRecord]) -> CostInfo:
        rec = self.recorder
        computed = [r for r in records if r.kind == "computed"] + [r for r in self.of_records.values() if r not in records]
        forward = max(0.0, rec.cell_seconds - rec.backward_seconds - rec.analysis_seconds - sum(r.seconds for r in self.of_records.values()))
        if rec.backward_calls or rec.grad_calls:
            backward = rec.backward_seconds
            source = "the cell's backward" if rec.backward_calls else "the cell's torch.autograd.grad"
        elif computed:
            backward = sum(r.seconds for r in computed)
            source = "the magic's own backward pass (the cell did not call backward)"
        else:
            backward, source = 0.0, "none"
        saved = sum(r.walk_info.saved_bytes for r in records)
        cost = CostInfo(
            forward_s=forward,
            backward_s=backward,
            saved_bytes=saved,
            ratio=(backward / forward) if forward > 0 and backward > 0 else None,
            backward_source=source,
            backward_calls=rec.backward_calls,
            grad_calls=rec.grad_calls,
            magic_s=rec.analysis_seconds,
        )
        if rec.flop_counter is not None:
            total = rec.flop_counter.get_total_flops()
            back = sum(r.flops or 0 for r in rec.calls)
            inside = sum(r.flops or 0 for r in self.of_records.values() if r.source and "before" in r.source)
            cost.flops_forward = max(0, total - back - inside)
            if rec.backward_calls or rec.grad_calls:
                cost.flops_backward = back
            elif computed:
                cost.flops_backward = sum(r.flops or 0 for r in computed)
        return cost

    def _non_finite(self, records: list[CallRecord], rows: list[GradientRow]) -> dict[str, Any] | None:
        bad = [r for r in rows if r.status == "non_finite"]
        outs_bad = [o for o in self._outputs_values(records) if o is not None and isinstance(o, float) and not math.isfinite(o)]
        if not bad and not outs_bad:
            return None
        # forward first: the first named tensor (in cell order) holding a NaN/inf
        for name, line in sorted(self.cell.assigned.items(), key=lambda kv: kv[1]):
            obj = self.namespace.get(name)
            if isinstance(obj, torch.Tensor) and (obj.is_floating_point() or obj.is_complex()) and obj.numel() and obj.layout == torch.strided:
                with torch.no_grad():
                    if not bool(torch.isfinite(obj).all()):
                        op = type(obj.grad_fn).__name__ if obj.grad_fn is not None else "a leaf"
                        return {"where": "forward", "name": name, "op": op, "line": line, "code": self.cell.code(line), "wrt": [r.wrt for r in bad]}
        for record in records:
            if record.non_finite_at is not None:
                node_id, op, line = record.non_finite_at
                return {"where": "backward", "name": record.walk_info.nodes[node_id].name, "op": op, "line": line, "code": self.cell.code(line), "wrt": [r.wrt for r in bad]}
        return {"where": "unknown", "name": None, "op": None, "line": None, "code": None, "wrt": [r.wrt for r in bad],
                "hint": "run the cell as %%autograd --nan to find the op whose backward makes the first NaN/inf"}

    def _outputs_values(self, records: list[CallRecord]) -> list[Any]:
        return [r.value for rec in records for r in rec.roots]

    def _check(self, records: list[CallRecord]) -> CheckInfo:
        from tensormagic.engine.autograd_check import check_gradients

        tape = self.recorder.tape or []
        try:
            if not records:
                return CheckInfo(None, "nothing to check: no output")
            outputs = [t for r in records for t in r.root_tensors]
            seen: set[int] = set()
            inputs: list[tuple[str, torch.Tensor]] = []
            for r in records:
                for key, target in r.targets.items():
                    t = target.ref()
                    if target.kind == "leaf" and t is not None and key not in seen:
                        seen.add(key)
                        inputs.append((target.name or f"leaf{list(t.shape)}", t))
            if not outputs:
                return CheckInfo(None, "not checked: the outputs were not kept", [n for n, _ in inputs])
            ok, message = check_gradients(tape, inputs, outputs)
            return CheckInfo(ok, message, [n for n, _ in inputs])
        finally:
            tape.clear()
            for r in records:
                r.root_tensors = []


# ---------------------------------------------------------------------------------------------
# helpers


def _requires_grad(obj: Any) -> bool:
    if isinstance(obj, torch.Tensor):
        return bool(obj.requires_grad)
    if isinstance(obj, torch.nn.Module):
        return any(p.requires_grad for p in obj.parameters())
    return False


def _cut_words(how: str) -> str:
    return {"detach": "with .detach()", "data": "with .data", "no_grad": "under torch.no_grad()"}.get(how, how)


def _bad(s: GradSummary) -> bool:
    p = s.plain()
    return bool(p.get("nan") or p.get("inf"))


def _grad_value(plain: dict[str, Any]) -> Any:
    if plain.get("value") is not None:
        return plain["value"]
    return {k: plain.get(k) for k in ("norm", "min", "max", "mean", "nan", "inf")} | {"summary": f"{plain['dtype']} {tuple(plain['shape'])}, norm {_short(plain.get('norm'))}"}


def _short(value: Any) -> str:
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e15:
            return f"{value:.1f}"
        return f"{value:.4g}"
    if isinstance(value, list):
        flat = str(value)
        return flat if len(flat) <= 60 else flat[:57] + "…"
    return str(value)


def _merge_graphs(infos: list[GraphInfo]) -> GraphInfo:
    if len(infos) == 1:
        return infos[0]
    if not infos:
        return GraphInfo([], [], [], [], [], 0)
    nodes: list[GraphNode] = []
    edges: list[list[int]] = []
    roots: list[int] = []
    order: list[int] = []
    repeats: list[RepeatedBlock] = []
    for info in infos:
        off = len(nodes)
        for n in info.nodes:
            nodes.append(GraphNode(n.id + off, n.op, n.kind, n.name, n.line, n.code, [j + off for j in n.inputs], n.shape, n.saved_bytes, n.saved))
        edges += [[a + off, b + off] for a, b in info.edges]
        roots += [r + off for r in info.roots]
        start = len(order)
        order += [i + off for i in info.order]
        repeats += [RepeatedBlock(b.start + start, b.length, b.times, b.ops) for b in info.repeats]
    return GraphInfo(nodes, edges, roots, order, repeats, sum(i.saved_bytes for i in infos), any(i.truncated for i in infos))


def _param_norm(t: torch.Tensor | None) -> float:
    if t is None or t.layout != torch.strided or t.device.type == "meta":
        return math.nan
    got = cpu_moments(t)
    if got is not None:
        return math.sqrt(got[3])
    with torch.no_grad():
        src = t.detach()
        if src.is_complex():
            src = src.abs()
        return float(torch.linalg.vector_norm(src, dtype=torch.float64))


def _health(rows: list[GradientRow], graph: GraphInfo, params: Mapping[str, torch.Tensor | None] | None = None) -> list[HealthRow]:
    """Per-parameter gradient norms, inputs first (the order of a gradient-flow chart)."""
    position = {graph.nodes[i].name: p for p, i in enumerate(graph.order) if graph.nodes[i].kind == "leaf"}
    leaf_rows = [r for r in rows if r.kind == "leaf" and r.status in ("ok", "non_finite") and r.norm is not None]
    if not leaf_rows:
        return []
    seen: set[str] = set()
    top = max((r.norm for r in leaf_rows if r.norm is not None and math.isfinite(r.norm)), default=0.0)
    out: list[HealthRow] = []
    for r in sorted(leaf_rows, key=lambda r: -position.get(r.wrt, -1)):
        if r.wrt in seen:
            continue
        seen.add(r.wrt)
        flag = None
        norm = float(r.norm)
        if r.nan or r.inf or not math.isfinite(norm):
            flag = "NaN/inf"
        elif norm < VANISHING or (top > 0 and norm < VANISHING_RELATIVE * top):
            flag = "vanishing"
        elif norm > EXPLODING:
            flag = "exploding"
        pnorm = _param_norm((params or {}).get(r.wrt))
        ratio = norm / pnorm if pnorm and math.isfinite(pnorm) and math.isfinite(norm) else None
        out.append(HealthRow(r.wrt, r.shape or [], norm, pnorm, ratio, flag))
    return out


def locate_nonfinite(output: torch.Tensor, grad_output: torch.Tensor | None, names_of: Callable[..., Any], record: CallRecord) -> tuple[int, str, int | None] | None:
    """Run backward once more with a hook on every node: the first whose output gradient turns NaN/inf."""
    names, fn_names, keep, _ = names_of()
    walk = walk_graph([output.grad_fn], names, fn_names, saved=False)
    order_ids = {id(o): i for i, o in enumerate(walk.node_objects)}
    first: list[int] = []
    handles = []
    for obj in walk.node_objects:
        if type(obj).__name__ == "AccumulateGrad":
            continue

        def post(grad_inputs: Any, grad_outputs: Any, obj: Any = obj) -> None:
            if not first and turns_non_finite(grad_inputs, grad_outputs):
                first.append(order_ids[id(obj)])

        handles.append(obj.register_hook(post))
    leaves = list(walk.leaves.values())
    try:
        with torch.enable_grad():
            _ORIG_GRAD([output], leaves, [grad_output] if grad_output is not None else ([torch.ones_like(output)] if output.numel() != 1 else None), retain_graph=True, allow_unused=True)
    except Exception:  # noqa: BLE001
        return None
    finally:
        for h in handles:
            h.remove()
    del keep
    if not first:
        return None
    # map to the record's own node ids by position: both walks start from the same root in the same way
    i = first[0]
    node = walk.info.nodes[i]
    rec_node = record.walk_info.nodes[i] if i < len(record.walk_info.nodes) else node
    return (rec_node.id, node.op, rec_node.line)


def jacobian(name: str, output: torch.Tensor, inputs: list[tuple[str, torch.Tensor]], budget: int) -> tuple[list[JacobianInfo], str | None]:
    """The full Jacobian of ``output`` w.r.t. each input when it fits ``budget`` entries; else a note."""
    m = output.numel()
    n = sum(t.numel() for _, t in inputs)
    entries = m * n
    if not inputs:
        return [], None
    if entries > budget:
        size = entries * output.element_size()
        return [], (
            f"the Jacobian of {name} ({m:,} outputs) with respect to {', '.join(n for n, _ in inputs[:4])}{'…' if len(inputs) > 4 else ''} "
            f"({n:,} inputs) would have {entries:,} entries ({_bytes(size)}), above the budget of {budget:,}: not computed; "
            "the gradients shown are vector-Jacobian products with ones (raise it with --jacobian-budget N)"
        )
    need = entries * max(output.element_size(), 8) * 2  # the Jacobian, its float64 copy for the report
    free = _free_bytes(output.device)
    if free is not None and need > free // 2:
        return [], (
            f"the Jacobian of {name} would have {entries:,} entries ({_bytes(need)} with its copy) but only {_bytes(free)} "
            f"of {output.device.type} memory is free: not computed; the gradients shown are vector-Jacobian products with ones"
        )
    flat = output.reshape(-1)
    tensors = [t for _, t in inputs]
    rows: list[list[torch.Tensor | None]] = []
    chunk = max(1, min(m, budget // max(m, 1)))
    with torch.enable_grad():
        for start in range(0, m, chunk):
            c = min(chunk, m - start)
            eye = torch.zeros(c, m, dtype=output.dtype, device=output.device)
            eye[torch.arange(c), torch.arange(start, start + c)] = 1
            try:
                got = _ORIG_GRAD([flat], tensors, [eye], retain_graph=True, allow_unused=True, is_grads_batched=True)
                rows.append(list(got))
            except Exception:  # noqa: BLE001 - ops without a batching rule: one row at a time
                per = [_ORIG_GRAD([flat], tensors, [eye[k]], retain_graph=True, allow_unused=True) for k in range(c)]
                rows.append([None if per[0][j] is None else torch.stack([p[j] for p in per]) for j in range(len(tensors))])
    out: list[JacobianInfo] = []
    for j, (wname, t) in enumerate(inputs):
        parts = [r[j] if r[j] is not None else torch.zeros((c_rows(r, t),) + tuple(t.shape), dtype=t.dtype, device=t.device) for r in rows]
        full = torch.cat([p.reshape(-1, *t.shape) for p in parts]).reshape(*output.shape, *t.shape)
        size = full.numel()
        with torch.no_grad():
            fd = full.detach().double().cpu()
            summary = {"norm": float(fd.norm()), "min": float(fd.min()) if size else 0.0, "max": float(fd.max()) if size else 0.0}
            values = fd.tolist() if size <= JACOBIAN_VALUES else None
        out.append(JacobianInfo(name, wname, list(full.shape), size, values, summary))
    return out, None


def _free_bytes(device: torch.device) -> int | None:
    """Free memory where ``device`` lives, when it can be told (None: unknown)."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        if device.type == "cpu":
            import os

            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError, RuntimeError):
        return None
    return None


def c_rows(row: list[Any], t: torch.Tensor) -> int:
    for r in row:
        if r is not None:
            return int(r.shape[0])
    return 1


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:,.1f} {unit}" if unit != "B" else f"{int(size):,} B"
        size /= 1024
    return f"{n:,} B"  # pragma: no cover


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


__all__ = [
    "AutogradOptions",
    "AutogradReport",
    "AutogradSession",
    "AutogradUsageError",
    "CheckInfo",
    "CostInfo",
    "GradientRow",
    "HealthRow",
    "JacobianInfo",
    "OutputInfo",
    "STATUSES",
    "check_expressions",
    "jacobian",
    "split_names",
]
