"""One row per tensor involved in a gradient computation: its gradient, or why it has none.

:class:`RowBuilder` turns the records of the cell's calls into :class:`~.report.GradientRow`\\ s:
the leaves and named intermediates of each graph (``ok``, ``non_leaf``, ``non_finite``,
``unused``, ``not_computed``), then the other tensors the cell uses (``no_requires_grad``,
``detached``, ``integer_dtype``, ``unused``).  Tensors are matched by identity, so a tensor with
several names is one row naming all of them, and a tensor the cell gave ``backward`` as the
gradient to start from is not mistaken for an input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from tensormagic.engine.autograd.changes import grad_change, short
from tensormagic.engine.autograd.naming import Names
from tensormagic.engine.autograd.recorder import Recorder
from tensormagic.engine.autograd.records import CallRecord, Target
from tensormagic.engine.autograd.report import GradientRow, Status
from tensormagic.engine.autograd.source import CellSource
from tensormagic.engine.autograd.summary import GradSummary, summarise
from tensormagic.engine.sharding.fsdp import (
    GradMark,
    fsdp_roots,
    grad_changed,
    placement_words,
    unsharded_copies,
)

#: Rows for the unused parameters of one module, at most.
MAX_MODULE_ROWS = 200

_CUT_WORDS = {"detach": "with .detach()", "data": "with .data", "no_grad": "under torch.no_grad()"}
_CUT_FIX = {
    "detach": "drop .detach() where the gradient should flow through {name}; keep it only for values that must not be trained",
    "data": "use the tensor itself instead of .data (which hides the operation from autograd)",
    "no_grad": "compute {name} outside the torch.no_grad() block if gradients should flow through it",
}


def grad_value(plain: dict[str, Any]) -> Any:
    """What a row shows as the gradient: the values (small), else a summary dict."""
    if plain.get("value") is not None:
        return plain["value"]
    out = {k: plain.get(k) for k in ("norm", "min", "max", "mean", "nan", "inf")}
    shape = tuple(plain["shape"]) if plain.get("shape") is not None else "?"
    if plain.get("note"):
        out["summary"] = f"{plain['dtype']} {shape}: {plain['note']}"
    else:
        out["summary"] = f"{plain['dtype']} {shape}, norm {short(plain.get('norm'))}" + (f" ({plain['scope']})" if plain.get("scope") else "")
    return out


def d(of: str, name: str) -> str:
    """``dy/dw``; ``d(y + z)/dw`` for an output that is an expression."""
    return f"d{of}/d{name}" if of.isidentifier() else f"d({of})/d{name}"


def _requires_grad(obj: Any) -> bool:
    if isinstance(obj, torch.Tensor):
        return bool(obj.requires_grad)
    if isinstance(obj, torch.nn.Module):
        try:
            return any(p.requires_grad for p in obj.parameters())
        except Exception:  # noqa: BLE001
            return False
    return False


def _meta(t: Any) -> tuple[list[int] | None, str | None]:
    if t is None:
        return None, None
    try:
        return list(t.shape), str(t.dtype)
    except Exception:  # noqa: BLE001 - nested tensors
        return None, str(getattr(t, "dtype", None))


def _set(row: GradientRow, **fields: Any) -> GradientRow:
    """``row`` (made just now, shared with nothing) with ``fields`` set: ``dataclasses.replace``
    without its copy (a few microseconds per row of a big model)."""
    declared = GradientRow.__dataclass_fields__
    for key, value in fields.items():
        if key not in declared:  # declared fields only, as replace() checks
            raise AttributeError(f"GradientRow has no field {key!r}")
        setattr(row, key, value)
    return row


class RowBuilder:
    """Rows for one cell (see the module docstring)."""

    def __init__(self, namespace: Mapping[str, Any], cell: CellSource, names: Names, recorder: Recorder, used_names: list[str], sharded_grads: dict[int, GradMark] | None = None) -> None:
        self.ns = namespace
        self.cell = cell
        self.names = names
        self.recorder = recorder
        self.used_names = used_names  # the names the cell binds or uses, in cell order
        # every call's outputs, the tensors of its graph and the gradients it returned: never
        # "other tensors the cell uses" of any output (worked out once, not per output)
        self.cell_keys: set[int] = set()
        for call in recorder.calls:
            self.cell_keys |= {r.key for r in call.roots} | set(call.targets) | call.result_keys() | call.past_roots
        self.sharded_grads = sharded_grads or {}  # .grad marks of DTensor parameters before the cell
        self.fsdp_copies: dict[int, tuple[str, torch.Tensor]] = {}
        if self.sharded_grads:
            modules = [(n, namespace.get(n)) for n in used_names if isinstance(namespace.get(n), torch.nn.Module)]
            modules += [(n, m) for n, m in fsdp_roots(namespace) if n not in used_names]
            self.fsdp_copies = unsharded_copies(modules)

    def of(self, record: CallRecord) -> str:
        return ", ".join(r.name or "?" for r in record.roots)

    def rows(self, record: CallRecord) -> list[GradientRow]:
        of = self.of(record)
        label = "gradient"
        if any(r.seeded for r in record.roots):
            label = "vector-Jacobian product with the gradient passed to backward"
        elif record.ones or any(r.shape is not None and math.prod(r.shape) != 1 for r in record.roots):
            label = "vector-Jacobian product with ones (the gradient of the sum)"
        rows = [self._target_row(record, target, of, label) for target in record.targets.values() if target.key not in self.fsdp_copies]
        seen = set(record.targets) | {r.key for r in record.roots} | {r.seed_key for r in record.roots if r.seed_key is not None}
        copies = [self.fsdp_copies[k] for k in record.targets if k in self.fsdp_copies]
        for pname, sharded in copies:
            seen.add(id(sharded))
            rows.append(self._sharded_row(pname, sharded, record, of, label, fsdp=True))
        seen |= self.cell_keys
        rows += self._other_rows(record, of, seen)
        order = {Status.OK: 0, Status.NON_FINITE: 0, Status.NON_LEAF: 1}
        info = record.graph
        leaf_pos = {name: -p for name, p in info.leaf_positions().items() if name}
        rows.sort(key=lambda r: (order.get(r.status, 2), r.line if r.line is not None else 10**9, leaf_pos.get(r.wrt, 0)))
        return rows

    # -- leaves and intermediates of the graph ---------------------------------------------------

    def _target_row(self, record: CallRecord, target: Target, of: str, label: str) -> GradientRow:
        t = target.ref()
        name = self.names.name(t) if t is not None else None
        name = name or target.name or f"unnamed {target.kind}"
        aliases = self.names.aliases(t) if t is not None else []
        shape, dtype = _meta(t)
        line = self.cell.assigned.get(name)
        base = GradientRow(wrt=name, of=of, status=Status.UNUSED, shape=shape, dtype=dtype, kind=target.kind, line=line, aliases=aliases)
        summary: GradSummary | None = record.grads.get(target.key)
        if summary is None:
            reason, fix = self._missing(record, target, name, of)
            return _set(base, status=self._missing_status(record, target), reason=reason, fix=fix)
        plain = summary.plain()
        change = grad_change(self.recorder, target.key, name, summary) if target.kind == "leaf" and record.kind == "backward" else None
        if target.key in record.taken_from:
            label += f" of call {record.taken_from[target.key]} (.grad was set to None or changed after the last call, before the cell ended)"
        nan, inf = int(plain.get("nan", 0)), int(plain.get("inf", 0))
        base = _set(base, grad=grad_value(plain), norm=plain.get("norm"), label=label, nan=nan, inf=inf, change=change)
        if nan or inf:
            return _set(
                base, status=Status.NON_FINITE,
                reason=f"the gradient of {of} with respect to {name} holds {nan:,} NaN and {inf:,} inf value{'s' if nan + inf != 1 else ''}",
                fix="look at the op where it first appears (below): log/sqrt/division of 0, exp overflow or a 0/0; clamp the input (x.clamp_min(1e-12)), add an epsilon, or use a stable op (torch.logsumexp, F.log_softmax)",
            )
        if target.kind == "intermediate" and not target.retains_grad:
            return _set(
                base, status=Status.NON_LEAF,
                reason=f"{name} is an intermediate result (made from other tensors), not a leaf: its gradient is shown here, but {name}.grad stays None after backward",
                fix=f"call {name}.retain_grad() before backward to keep {name}.grad",
            )
        reason = f"{name}.retain_grad() was called, so {name}.grad keeps this gradient" if target.kind == "intermediate" else ""
        if plain.get("scope"):
            reason = f"summarised from this rank's {plain['scope']} only"
        return _set(base, status=Status.OK, reason=reason)

    def _missing_status(self, record: CallRecord, target: Target) -> Status:
        if record.error is not None or (record.inputs_only and target.key not in record.asked) or record.kind == "computed" or target.key in record.unhooked:
            return Status.NOT_COMPUTED
        return Status.UNUSED

    def _missing(self, record: CallRecord, target: Target, name: str, of: str) -> tuple[str, str]:
        """Why ``target`` got no gradient from ``record``, and the fix: (reason, fix)."""
        call = "backward" if record.kind == "backward" else "torch.autograd.grad"
        where = f" at line {record.line}" if record.line else ""
        if record.error is not None:
            return f"the cell's {call} call{where} raised {record.error}, so no gradient was computed for {name}", "fix the error above and run the cell again"
        if record.inputs_only and target.key not in record.asked:
            return f"the cell's {call} call{where} listed other inputs, so no gradient was computed for {name}", f"add {name} to inputs=... to get its gradient"
        if record.kind == "computed":
            return f"the magic did not compute the gradients of {of} (see below why)", f"call {of}.backward() in the cell to see them"
        if target.key in record.unhooked:
            return (
                f"{name} is an intermediate result in the graph of {of}, made anew at each step of the loop: the magic records "
                f"the gradients of intermediates at an output's first call only (not at a loop's repeated calls), so this call's was not recorded",
                f"call {name}.retain_grad() in the loop to keep {name}.grad, or run one step alone to see its gradient",
            )
        return f"no gradient reached {name}: {of} does not depend on it through differentiable ops (the gradient is zero or undefined)", "check that it is really used in computing the output"

    # -- other tensors the cell uses ---------------------------------------------------------------

    def _graph_names(self, record: CallRecord) -> set[str]:
        names = {t.name for t in record.targets.values() if t.name}
        names |= {r.name for r in record.roots if r.name}
        names |= {n.split(".")[0].split("[")[0] for n in list(names)}
        return names

    def _other_rows(self, record: CallRecord, of: str, seen: set[int]) -> list[GradientRow]:
        """Tensors the cell uses that have no gradient: not requiring grad, detached, unused, integer."""
        rows: list[GradientRow] = []
        graph_names = self._graph_names(record)
        saved = {n for node in record.graph.nodes for n in node.saved}
        seeds = {r.seed_key for r in record.roots if r.seed_key is not None}
        # a name is used with the graph when a statement reads it together with a graph name,
        # except the statement that starts the backward (its argument is the gradient to start from)
        with_graph: set[str] = set()
        for st in self.cell.statements:
            if (st.loads | st.stores) & graph_names:
                with_graph |= st.loads
        seen = set(seen)
        for name in self.used_names:
            obj = self.ns.get(name)
            if isinstance(obj, torch.nn.Module):
                rows += self._module_rows(name, obj, record, of, seen)
                continue
            if not isinstance(obj, torch.Tensor) or id(obj) in seen or id(obj) in seeds:
                continue
            seen.add(id(obj))
            row = self._other_row(name, obj, record, of, graph_names, saved, with_graph)
            if row is not None:
                row.aliases = [a for a in self.names.tensors.get(id(obj), []) if a != name]
                rows.append(row)
        return rows

    def _other_row(self, name: str, obj: torch.Tensor, record: CallRecord, of: str, graph_names: set[str], saved: set[str], with_graph: set[str]) -> GradientRow | None:
        line = self.cell.assigned.get(name)
        shape, dtype = _meta(obj)
        base = GradientRow(wrt=name, of=of, status=Status.UNUSED, shape=shape, dtype=dtype, line=line)
        cut = self.cell.cuts.get(name)
        used = name in saved or name in with_graph
        if obj.requires_grad:
            if obj.grad_fn is not None and name in graph_names:
                return None
            if obj.grad_fn is not None and record.kind != "computed" and record.graph_from != record.index and not record.checked:
                return None  # a loop's later call whose graph could not be read: whether it uses this intermediate is not known
            how = ""
            for other, c in self.cell.cuts.items():
                if name in c.sources:
                    how = f"; it is only used through {_CUT_WORDS.get(c.how, c.how)} at line {c.line} ({other} = …)"
                    break
            reason = f"{name} requires grad but {of} does not depend on it: it is not used in computing {of}{how}"
            if record.kind == "backward" and obj.is_leaf:
                reason += f"; {name}.grad is left as it was"
            if not torch.is_grad_enabled():
                reason = f"{name} requires grad, but grad mode is off (torch.set_grad_enabled(False) ran in this cell or before it): operations record no graph, so nothing computed from {name} has a gradient"
                fix = "turn it back on with torch.set_grad_enabled(True) (or compute inside with torch.enable_grad():) and run the cell again"
            elif obj.is_leaf:
                fix = f"use {name} in computing {of}, or set {name}.requires_grad_(False) if it should not be trained"
            else:
                fix = f"use {name} in computing {of} if it should contribute; it is an intermediate result (made from tensors that require grad), so otherwise nothing needs to change"
            return _set(base, status=Status.UNUSED, reason=reason, fix=fix, kind="leaf" if obj.is_leaf else "intermediate")
        if cut is not None and (cut.sources & graph_names or any(_requires_grad(self.ns.get(s)) for s in cut.sources)):
            src = ", ".join(sorted(s for s in cut.sources if _requires_grad(self.ns.get(s)) or s in graph_names)) or "its inputs"
            reason = f"{name} was made {_CUT_WORDS.get(cut.how, cut.how)} at line {cut.line} ({cut.code}): it is cut from the graph, so no gradient flows through it back to {src}"
            return _set(base, status=Status.DETACHED, reason=reason, fix=_CUT_FIX.get(cut.how, "").format(name=name))
        if not used:
            return None
        if not (obj.is_floating_point() or obj.is_complex()):
            reason = f"{name} has dtype {obj.dtype}: only floating-point and complex tensors can have gradients, so autograd treats it as a constant"
            fix = f"make it floating point if you need {d(of, name)}: {name} = {name}.float().requires_grad_() (or torch.tensor(3.0) instead of torch.tensor(3))"
            return _set(base, status=Status.INTEGER_DTYPE, reason=reason, fix=fix)
        use = next((st.line for st in self.cell.statements if name in st.loads and (st.loads | st.stores) & graph_names), None)
        where = f" at line {use} ({self.cell.code(use)})" if use else ""
        reason = f"{name} is used in computing {of}{where} but has requires_grad=False, so autograd computes no gradient for it (normal for input data and targets)"
        fix = f"to get {d(of, name)}, create it with requires_grad=True (e.g. {name} = torch.tensor(..., requires_grad=True)) or call {name}.requires_grad_() before using it"
        code = self.cell.code_without_comment(line) if line else None
        if code and "torch.tensor(" in code and "requires_grad" not in code and code.endswith(")") and code.count("(") == code.count(")"):
            fix = f"to get {d(of, name)}, create it with requires_grad=True: {code[:-1]}, requires_grad=True)"
        return _set(base, status=Status.NO_REQUIRES_GRAD, reason=reason, fix=fix)

    def _module_rows(self, name: str, module: torch.nn.Module, record: CallRecord, of: str, seen: set[int]) -> list[GradientRow]:
        rows: list[GradientRow] = []
        try:
            params = list(module.named_parameters())
        except Exception:  # noqa: BLE001 - a half-built module
            return rows
        for pname, p in params:
            if id(p) in seen:
                continue
            seen.add(id(p))
            if not p.requires_grad:
                continue
            full = self.names.name(p) or f"{name}.{pname}"
            if grad_changed(p, self.sharded_grads):
                rows.append(self._sharded_row(full, p, record, of, "gradient", fsdp=False))
                continue
            reason = f"{full} requires grad but {of} does not depend on it (this part of {name} is not used in computing {of})"
            if record.kind == "backward":
                reason += f"; {full}.grad is left as it was"
            shape, dtype = _meta(p)
            rows.append(GradientRow(wrt=full, of=of, status=Status.UNUSED, shape=shape, dtype=dtype, reason=reason, fix=f"use it, or freeze it with {full}.requires_grad_(False)", kind="leaf", line=self.cell.assigned.get(name), aliases=self.names.aliases(p)))
            if len(rows) >= MAX_MODULE_ROWS:
                break
        return rows


    def _sharded_row(self, name: str, p: torch.Tensor, record: CallRecord, of: str, label: str, fsdp: bool) -> GradientRow:
        """A DTensor parameter whose ``.grad`` the cell's backward set (through FSDP2's hooks when
        ``fsdp``: autograd's leaf was FSDP's unsharded copy): computed, from its local shard."""
        shape, dtype = _meta(p)
        line = self.cell.assigned.get(name.split(".")[0])
        aliases = self.names.aliases(p)
        if not grad_changed(p, self.sharded_grads) or p.grad is None:
            how = "its unsharded copy got no gradient" if fsdp else "its .grad did not change"
            return GradientRow(
                wrt=name, of=of, status=Status.UNUSED, shape=shape, dtype=dtype, kind="leaf", line=line, aliases=aliases,
                reason=f"{name} requires grad but {of} does not depend on it ({how})", fix="check that it is really used in computing the output",
            )
        summary = summarise(p.grad)
        plain = summary.plain() if summary is not None else {}
        via = "FSDP2 reduce-scattered the gradient of its unsharded copy into" if fsdp else "the cell's backward set"
        placed = placement_words(p.grad) or "plain"
        return GradientRow(
            wrt=name, of=of, status=Status.OK, shape=shape, dtype=dtype, kind="leaf", line=line, aliases=aliases,
            grad=grad_value(plain) if plain else None, norm=plain.get("norm"), label=label + " (local shard)",
            nan=int(plain.get("nan", 0)), inf=int(plain.get("inf", 0)),
            reason=f"{via} {name}.grad (a {placed} DTensor gradient); summarised from this rank's local shard only",
        )


__all__ = ["RowBuilder", "grad_value"]
