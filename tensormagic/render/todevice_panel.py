"""The panel of ``%todevice``'s report: moves, warnings, placement, devices, and a Move action.

When the IPython glue offered a move for the report (:mod:`~tensormagic.render.actions`), the
widget shows a device picker and a Move button (an :class:`~tensormagic.render.document.Action`)
whose callback performs the same move as the magic and returns the updated panel; text and HTML
show the magic to type.
"""

from __future__ import annotations

from tensormagic.engine.todevice.report import FAILED, TodeviceReport
from tensormagic.render.actions import move_of
from tensormagic.render.document import Action, Block, Level, Note, Panel, Section, Table
from tensormagic.render.format import MAX_ROWS, fmt_bytes, fmt_shape, short_type, truncate
from tensormagic.render.registry import builds


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.3g} ms"


def _memory(free: int | None, total: int | None) -> str:
    if total is None:
        return "-"
    return f"{fmt_bytes(free, exact=False)} free of {fmt_bytes(total, exact=False)}" if free is not None else fmt_bytes(total)


def _moves(report: TodeviceReport) -> Section:
    rows = [
        [
            truncate(m.name, 40),
            m.type if not m.new_type else f"{m.type} -> {m.new_type}",
            m.source,
            m.target,
            m.dtype,
            fmt_bytes(m.nbytes),
            _ms(m.seconds),
            m.status,
        ]
        for m in report.moves[:MAX_ROWS]
    ]
    blocks: list[Block] = [Table(["name", "type", "from", "to", "dtype", "bytes", "time", "status"], rows, total_rows=len(report.moves))]
    for m in report.moves:
        for note in m.notes:
            blocks.append(Note(f"{m.name}: {note}", "error" if m.status == FAILED else "info"))
    if report.seconds is not None:
        blocks.append(Note(f"total {_ms(report.seconds)}, timed with the devices synchronised"))
    return Section("Moves", blocks)


def _placement(report: TodeviceReport) -> Section:
    if not report.placement:
        return Section("Placement", [Note("no tensors, arrays, modules or optimizers in the namespace yet")])
    rows = [
        [truncate(r.name, 40), truncate(short_type(r.type), 50), r.device, truncate(r.dtype, 40), fmt_shape(r.shape), fmt_bytes(r.nbytes, exact=False), ("split! " if r.mixed else "") + (r.note or "")]
        for r in report.placement[:MAX_ROWS]
    ]
    headers = ["name", "type", "device", "dtype", "shape", "bytes", "note"]
    if any(r.local_nbytes is not None for r in report.placement):  # sharded tensors: what this rank holds, and how
        headers = ["name", "type", "device", "dtype", "shape", "placement", "bytes (global)", "bytes on this rank", "note"]
        rows = [
            [*row[:5], ", ".join(r.placements) if r.placements else "-", row[5], fmt_bytes(r.local_nbytes if r.local_nbytes is not None else r.nbytes, exact=False), row[6]]
            for row, r in zip(rows, report.placement, strict=False)
        ]
    blocks: list[Block] = [Table(headers, rows, total_rows=len(report.placement))]
    blocks += [Note(n, "warning" if "split" in n or "devices" in n else "info") for n in report.notes]
    return Section("Placement", blocks)


def _devices(report: TodeviceReport) -> Section:
    rows = [[d.name, d.label, _memory(d.free_bytes, d.total_bytes), "yes" if d.float64 else "no", d.note or ""] for d in report.devices]
    rows.append(["meta", "no data: shapes and dtypes only", "-", "yes", "moving back from meta fails: there is nothing to copy"])
    return Section("Devices", [Table(["device", "what", "memory", "float64", "note"], rows), Note(f"auto chooses {report.auto}", "ok")])


def _action(report: TodeviceReport) -> Action | None:
    choices = ["auto"] + [d.name for d in report.devices] + ["meta"]
    what = " ".join(report.names) if report.names else "--all"
    fallback = f"move with: %todevice {what} DEVICE (DEVICE: {', '.join(choices)})"
    callback = move_of(report)
    if callback is None:
        return None

    def run(choice: str) -> Panel:
        return todevice_panel(callback(choice))

    label = "move to" if report.names else "move all to"
    return Action(label, choices, run, fallback, button="Move")


@builds(TodeviceReport)
def todevice_panel(report: TodeviceReport) -> Panel:
    """The panel of a placement or move report."""
    sections = []
    if report.action == "move":
        sections.append(_moves(report))
    if report.warnings:
        sections.append(Section("Warnings", [Note(w, "warning") for w in report.warnings]))
    placement = _placement(report)
    action = _action(report)
    what = " ".join(report.names) if report.names else "--all"
    choices = ", ".join(["auto"] + [d.name for d in report.devices] + ["meta"])
    placement.blocks = [*placement.blocks, action if action is not None else Note(f"move with: %todevice {what if report.names else 'NAMES'} DEVICE (DEVICE: {choices})")]
    sections += [placement, _devices(report)]
    if report.action == "placement":
        title = "todevice · placement"
        level: Level = "warning" if any(r.mixed for r in report.placement) or any("devices" in n for n in report.notes) else "info"
    else:
        title = f"todevice · {truncate(', '.join(report.names), 60)} → {report.target}"
        level = "error" if report.error else ("warning" if report.warnings else "ok")
    headline = report.summary()
    if report.warnings:
        headline += f" · {len(report.warnings)} warning{'s' if len(report.warnings) != 1 else ''}"
    return Panel(title=title, headline=headline, sections=sections, headline_level=level)


__all__ = ["todevice_panel"]
