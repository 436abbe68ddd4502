"""The report of ``%%autograd``: plain values only (no tensor, node or hook survives the cell)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal

from tensormagic.engine.autograd.graph import GraphInfo
from tensormagic.engine.report import Report

Severity = Literal["ok", "info", "warning", "error"]


class Status(str, enum.Enum):
    """What a row says about one tensor's gradient; :attr:`severity` says how bad that is."""

    OK = "ok"
    NON_LEAF = "non_leaf"
    NO_REQUIRES_GRAD = "no_requires_grad"
    DETACHED = "detached"
    UNUSED = "unused"
    INTEGER_DTYPE = "integer_dtype"
    NON_FINITE = "non_finite"
    NOT_COMPUTED = "not_computed"

    @property
    def severity(self) -> Severity:
        return _SEVERITY[self]

    @property
    def has_gradient(self) -> bool:
        """The row shows a gradient (possibly one ``.grad`` does not keep)."""
        return self in (Status.OK, Status.NON_LEAF, Status.NON_FINITE)

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


_SEVERITY: dict[Status, Severity] = {
    Status.OK: "ok",
    Status.NON_LEAF: "info",
    Status.NO_REQUIRES_GRAD: "info",
    Status.NOT_COMPUTED: "info",
    Status.DETACHED: "warning",
    Status.UNUSED: "warning",
    Status.INTEGER_DTYPE: "warning",
    Status.NON_FINITE: "error",
}


@dataclass(kw_only=True)
class OutputInfo:
    """A tensor the gradients are taken of."""

    name: str
    shape: list[int] | None
    dtype: str
    value: Any  # a number for one-element outputs
    source: str  # "backward" | "torch.autograd.grad" | "--of" | "last expression" | "graph root"
    line: int | None = None  # where the cell assigned it (else the call's line)
    call_line: int | None = None  # the cell line of the backward / torch.autograd.grad call
    weighted: bool = False  # given a gradient to start from: the gradients are vector-Jacobian products
    seed: str | None = None  # the name of that gradient tensor
    calls: int = 1  # gradient computations of this output in the cell
    error: str | None = None  # the cell's call raised this


@dataclass(kw_only=True)
class GradientRow:
    """d(of)/d(wrt), or why there is none."""

    wrt: str
    of: str
    status: Status
    grad: Any = None  # a number, a nested list (small), a summary dict (big) or None
    shape: list[int] | None = None
    dtype: str | None = None
    norm: float | None = None
    reason: str = ""
    fix: str = ""
    kind: str = "tensor"  # "leaf" | "intermediate" | "tensor"
    line: int | None = None  # where wrt was made in the cell
    label: str = "gradient"  # or "vector-Jacobian product with ones" / "... with the gradient passed to backward"
    change: str | None = None  # e.g. "w.grad += 3.0, now 13.0"
    nan: int = 0
    inf: int = 0
    aliases: list[str] = field(default_factory=list)  # other names of the same tensor


@dataclass(kw_only=True)
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
    extra_s: float = 0.0  # time of the magic's own computations (its backward, Jacobians, check)
    report_s: float = 0.0  # time building the report after the cell
    saved_under_hooks: int = 0  # saved tensors packed by saved-tensor hooks (their bytes not counted)
    flops_forward: int | None = None
    flops_backward: int | None = None


@dataclass(kw_only=True)
class HealthRow:
    """One parameter's gradient in the gradient-flow chart."""

    name: str
    shape: list[int]
    grad_norm: float
    param_norm: float
    ratio: float | None
    flag: str | None  # "NaN/inf" | "vanishing" (also exactly zero) | "exploding"


@dataclass(kw_only=True)
class JacobianInfo:
    """d(of)/d(wrt) in full: shape of + shape of wrt."""

    of: str
    wrt: str
    shape: list[int]
    entries: int
    values: Any  # nested lists up to JACOBIAN_VALUES entries, else None
    summary: dict[str, float] | None = None
    mode: str = "reverse"  # "reverse" (rows) | "forward" (columns, through double backward)


@dataclass(kw_only=True)
class CheckInfo:
    """The result of ``torch.autograd.gradcheck`` in float64 on copies of the inputs."""

    ok: bool | None
    message: str
    inputs: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class NotComputed:
    """Extra work the magic did not do, and why: each item says how to ask for it."""

    what: str  # "gradients" | "jacobian" | "nan location" | "check"
    why: str
    option: str | None = None  # the engine option that asks for it (the views name the flag)
    estimate_s: float | None = None


@dataclass(kw_only=True, repr=False)
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
    not_computed: list[NotComputed] = field(default_factory=list)
    message: str | None = None  # set when there is nothing to differentiate
    non_finite: dict[str, Any] | None = None  # where a NaN/inf first appears: {op, line, code, where}

    def summary(self) -> str:
        if self.message:
            return self.message
        outs = ", ".join(o.name for o in self.outputs)
        ok = sum(1 for g in self.gradients if g.status in (Status.OK, Status.NON_LEAF))
        return f"gradients of {outs}: {ok} computed, {len(self.gradients) - ok} missing or flagged"

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if not self.jacobian:
            d.pop("jacobian")
        return d

    def row(self, wrt: str, of: str | None = None) -> GradientRow:
        """The row of ``wrt`` (a name or an alias; of the first output, or of ``of``)."""
        for row in self.gradients:
            if (row.wrt == wrt or wrt in row.aliases) and (of is None or row.of == of):
                return row
        raise KeyError(wrt)

    def grad(self, wrt: str, of: str | None = None) -> Any:
        """The gradient value of ``wrt`` (of the first output, or of ``of``)."""
        return self.row(wrt, of).grad


__all__ = ["AutogradReport", "CheckInfo", "CostInfo", "GradientRow", "HealthRow", "JacobianInfo", "NotComputed", "OutputInfo", "Severity", "Status"]
