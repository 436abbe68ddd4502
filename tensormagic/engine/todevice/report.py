"""``%todevice``'s report: the placement of a namespace, the devices, and the moves made.

A report holds plain values only (the widget's Move button gets its action from the glue, through
``tensormagic.render.actions``, never from the report).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from tensormagic.engine.naming import is_array, short_type_name
from tensormagic.engine.report import Report
from tensormagic.engine.todevice.devices import (
    DeviceInfo,
    auto_device,
    available_devices,
)
from tensormagic.engine.todevice.placement import (
    SPLIT_MESH,
    PlacementRow,
    dtype_of,
    leaves,
    placement,
)

if TYPE_CHECKING:
    from tensormagic.engine.todevice.mover import Plan

@dataclass(kw_only=True)
class MoveRow:
    """One named object of a move (``source``/``target`` are ``from``/``to`` in ``to_dict()``)."""

    name: str
    type: str
    source: str  # device(s) before
    target: str  # device after
    nbytes: int
    seconds: float | None
    status: str  # "moved" | "unchanged" | "failed" | "rolled back" | "not attempted"
    dtype: str  # "torch.float32" or "float64 -> torch.float64"
    new_type: str | None = None
    notes: list[str] = field(default_factory=list)


#: Statuses of a move row.
MOVED, UNCHANGED, FAILED, ROLLED_BACK, NOT_ATTEMPTED = "moved", "unchanged", "failed", "rolled back", "not attempted"


@dataclass(kw_only=True, repr=False)
class TodeviceReport(Report):
    """Where everything lives and, after a move, what moved where (see ``%todevice?``)."""

    action: str  # "placement" | "move"
    requested: str | None  # the DEVICE as given ("auto", "cuda")
    target: str | None  # the concrete device ("cuda:0")
    dtype: str | None
    non_blocking: bool
    pin_memory: bool
    names: list[str]
    moves: list[MoveRow]
    placement: list[PlacementRow]
    devices: list[DeviceInfo]
    auto: str
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float | None = None
    error: str | None = None


    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["moves"] = [
            {("from" if k == "source" else "to" if k == "target" else k): v for k, v in row.items()} for row in data["moves"]
        ]
        return data

    def summary(self) -> str:
        if self.action == "placement":
            devices = sorted({d.split(" (")[0] for row in self.placement for d in row.device.split(", ") if d not in ("-", "?")})
            unreadable = sum(row.kind == "unreadable" for row in self.placement)
            odd = f" ({unreadable} could not be read)" if unreadable else ""
            return f"{len(self.placement)} objects on {', '.join(devices) or 'no device'}{odd}; auto would choose {self.auto}"
        if self.error:
            return f"nothing moved: {self.error}"
        moved = [m.name for m in self.moves if m.status == MOVED]
        total = sum(m.nbytes for m in self.moves if m.status == MOVED)
        took = f", {self.seconds * 1000:.3g} ms" if self.seconds is not None else ""
        if not moved:
            return f"nothing to move: {', '.join(self.names)} already on {self.target}"
        return f"moved {', '.join(moved)} to {self.target} ({total:,} bytes{took})"


def placement_report(namespace: Mapping[str, Any], hidden: frozenset[str] | set[str] = frozenset()) -> TodeviceReport:
    """``%todevice`` with no argument: every movable variable, the devices, and ``auto``'s choice."""
    rows, notes = placement(namespace, hidden)
    return TodeviceReport(
        action="placement", requested=None, target=None, dtype=None, non_blocking=False, pin_memory=False,
        names=[], moves=[], placement=rows, devices=available_devices(), auto=str(auto_device()), notes=notes,
    )


def _dtype_change(old: Any, new: Any) -> str:
    if is_array(old):
        before = dtype_of(old)
        after = dtype_of(new) if is_array(new) else before
        return before if before == after else f"{before} -> {after}"
    if isinstance(old, torch.nn.Module):
        return ", ".join(dict.fromkeys(dtype_of(leaf) for _, leaf in leaves(old, ""))) or "-"
    return "-"


def move_report(
    namespace: Mapping[str, Any],
    hidden: frozenset[str] | set[str],
    chosen: list[str],
    target: torch.device,
    requested: str,
    dtype: torch.dtype | None,
    non_blocking: bool,
    pin_memory: bool,
    before: dict[str, str],
    sizes: dict[str, int],
    plans: dict[str, Plan],
    failed: str | None = None,
    reason: str = "",
    warnings: list[str] | None = None,
    notes: list[str] | None = None,
    seconds: float | None = None,
    attempted: Sequence[str] = (),
) -> TodeviceReport:
    rows = []
    for name in chosen:
        obj = namespace.get(name)
        plan = plans.get(name)
        if failed is not None:
            status = FAILED if name == failed else (ROLLED_BACK if name in attempted else NOT_ATTEMPTED)
            new_type, row_notes, secs = None, [reason] if name == failed else [], None
            dtype_text = _dtype_change(obj, obj)
        else:
            assert plan is not None
            obj = plan.old
            status = MOVED if plan.changed else UNCHANGED
            new_type = short_type_name(plan.new) if type(plan.new) is not type(plan.old) else None
            row_notes, secs = plan.notes, plan.seconds
            dtype_text = _dtype_change(plan.old, plan.new)
        rows.append(MoveRow(name=name, type=short_type_name(obj), source=before[name], target=str(target), nbytes=sizes[name], seconds=secs, status=status, dtype=dtype_text, new_type=new_type, notes=row_notes))
    placed, placement_notes = placement(namespace, hidden)
    moved_rows = {r.name for r in placed if r.local_nbytes is not None}
    if moved_rows & set(chosen):
        warnings = [*(warnings or []), f"{', '.join(sorted(moved_rows & set(chosen)))}: {SPLIT_MESH}"]
        placement_notes = [n for n in placement_notes if n != SPLIT_MESH]
    return TodeviceReport(
        action="move",
        requested=requested,
        target=str(target),
        dtype=str(dtype) if dtype is not None else None,
        non_blocking=non_blocking,
        pin_memory=pin_memory,
        names=list(chosen),
        moves=rows,
        placement=placed,
        devices=available_devices(),
        auto=str(auto_device()),
        warnings=warnings or [],
        notes=(notes or []) + placement_notes,
        seconds=seconds,
        error=f"{failed}: {reason}" if failed else None,
    )
