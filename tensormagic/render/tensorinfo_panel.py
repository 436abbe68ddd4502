"""Panels of ``%tensorinfo``'s reports (one builder per report; renderers do the rest)."""

from __future__ import annotations

from tensormagic.engine.sharding.layout import mesh_words
from tensormagic.engine.tensorinfo import ModuleInfo, NamespaceInfo, TensorInfo
from tensormagic.render.document import (
    Bars,
    Block,
    KeyValues,
    Level,
    Note,
    Panel,
    Preformatted,
    Section,
    Table,
)
from tensormagic.render.format import (
    MAX_ROWS,
    fmt_bytes,
    fmt_number,
    fmt_shape,
    short_type,
    shown_std,
    truncate,
    yes_no,
)
from tensormagic.render.registry import builds
from tensormagic.render.sharding_panel import sharding_section
from tensormagic.render.tensor_pictures import histogram_block, picture_blocks


def _twin(info: TensorInfo) -> str:
    if info.equivalent_dtype:
        return info.equivalent_dtype
    return f"none ({info.equivalent_note})" if info.equivalent_note else "none"


def _headline(info: TensorInfo) -> str:
    parts = [f"{truncate(info.name, 60)}: {info.type} {info.dtype} {fmt_shape(info.shape)} on {info.device}"]
    sh = info.sharding
    if sh is not None:
        parts = [f"{truncate(info.name, 60)}: DTensor {info.dtype} {fmt_shape(sh.global_shape)} ({', '.join(sh.placements)}) on {mesh_words(sh.mesh_shape, sh.device_type)}, local {fmt_shape(sh.local_shape)} on rank {sh.rank}"]
    parts.append(f"twin {info.equivalent_dtype}" if info.equivalent_dtype else "no twin dtype")
    s = info.stats
    if s is not None and s.count:
        bad = s.nan + s.posinf + s.neginf
        sampled = "" if s.exact else " (in a sample)"
        over = "|z| " if "|z|" in s.over else ""
        if s.scope in ("local", "partial"):
            sampled += " (partial values)" if s.scope == "partial" else " (local shard)"
        parts.append(f"{bad:,} NaN/inf!{sampled}" if bad else f"{over}range [{fmt_number(s.min)}, {fmt_number(s.max)}]{sampled}")
    if info.aliases:
        names = ", ".join(truncate(a.name, 30) for a in info.aliases[:3])
        parts.append(f"shares memory with {names}")
    return " · ".join(parts)


def _summary(info: TensorInfo) -> Section:
    rows = [
        ("type", info.type),
        ("dtype", info.dtype),
        ("twin dtype" if info.type.startswith("torch") else "torch twin", _twin(info)),
        ("shape", fmt_shape(info.shape)),
        ("elements", fmt_number(info.numel)),
        ("device", info.device),
        ("bytes" if info.sharding is None else "bytes on this rank", fmt_bytes(info.nbytes)),
    ]
    if info.requires_grad is not None:
        rows.append(("requires_grad", yes_no(info.requires_grad)))
    blocks: list[Block] = [KeyValues(rows)]
    blocks += [Note(n, "warning" if "NaN" in n else "info") for n in info.notes if "stride of 0" in n]
    for key in ("sparse", "quantized", "nested", "masked", "file"):
        if key in info.details:
            blocks.append(KeyValues([(f"{key}: {k}", truncate(str(v), 100)) for k, v in info.details[key].items()]))
    return Section("Summary", blocks)


def _layout(info: TensorInfo) -> Section:
    local = "" if info.sharding is None else " (local shard)"
    rows = [
        ("layout", info.layout),
        ("memory format", info.memory_format),
        ("contiguous" + local, yes_no(info.contiguous)),
        ("strides (elements)" + local, fmt_shape(info.strides)),
        ("strides (bytes)" + local, fmt_shape(info.byte_strides)),
        ("item size", f"{info.itemsize} B"),
        ("logical bytes" + local, fmt_bytes(info.nbytes)),
        ("storage bytes" + local, fmt_bytes(info.storage_nbytes)),
    ]
    if info.storage_offset is not None:
        rows.append(("storage offset", fmt_number(info.storage_offset)))
    blocks: list[Block] = [KeyValues(rows)]
    blocks += [Note(n) for n in info.notes]
    return Section("Layout & memory", blocks)


def _values(info: TensorInfo) -> Section:
    s = info.stats
    if s is None:
        return Section("Values", [Note(info.stats_note or "no statistics", "info")])
    how = "exact" if s.exact else f"estimated from a sample of {s.sample_size:,} of {s.count:,} elements"
    std_label, std = shown_std(s, numpy=info.type.startswith("numpy"))
    scope = {"local": "this rank's local shard", "partial": "partial values (not the tensor's)", "global": "the whole tensor (all ranks)"}
    rows = ([("scope", scope[s.scope])] if s.scope else []) + [
        ("min", fmt_number(s.min)),
        ("max", fmt_number(s.max)),
        ("mean", fmt_number(s.mean)),
        (std_label, fmt_number(std)),
        ("NaN", fmt_number(s.nan)),
        ("+inf", fmt_number(s.posinf)),
        ("-inf", fmt_number(s.neginf)),
        ("zeros", fmt_number(s.zeros)),
    ]
    if s.masked is not None:
        rows.append(("masked (left out)", fmt_number(s.masked)))
    if not s.exact:  # counts are the sample's, not the tensor's
        rows = [(k + " (in the sample)", v) if k in ("NaN", "+inf", "-inf", "zeros") else (k, v) for k, v in rows]
    blocks: list[Block] = [KeyValues(rows), Note(f"over {s.over}; {how}")]
    if s.nan or s.posinf or s.neginf:
        blocks.append(Note("non-finite values present: min, max, mean and std are over the finite values", "warning"))
    drawn = info.pictures.histogram if info.pictures is not None else None
    h = info.histogram
    if drawn is not None:
        blocks.append(histogram_block(info.name, drawn))
    elif info.pictures is None and h is not None and len(h.counts) > 1 and sum(h.counts) > 0:
        if h.boolean:
            labels = ["False", "True"]
        elif h.integer:
            labels = [fmt_number(int(h.edges[i])) for i in range(len(h.counts))]
        else:
            labels = [f"{h.edges[i]:.3g} … {h.edges[i + 1]:.3g}" for i in range(len(h.counts))]
        caption = "histogram" + (" (from a sample)" if h.sampled else "")
        if info.sharding is not None:
            caption += " of this rank's partial values" if info.sharding.partial else " of this rank's local shard"
        blocks.append(Bars(labels, [float(c) for c in h.counts], caption, value_format="{:,.0f}"))
    return Section("Values", blocks)


def _autograd(info: TensorInfo) -> Section:
    if info.requires_grad is None:
        return Section("Autograd", [Note("NumPy arrays have no autograd; torch.from_numpy(a).requires_grad_() makes a leaf tensor that shares a's memory")])
    rows = [
        ("requires_grad", yes_no(info.requires_grad)),
        ("is_leaf", yes_no(info.is_leaf)),
        ("grad_fn", info.grad_fn or "-"),
        ("grad", info.grad or "None"),
        ("version", fmt_number(info.version)),
    ]
    blocks: list[Block] = [KeyValues(rows)]
    if info.requires_grad and not info.is_leaf:
        blocks.append(Note("a non-leaf tensor: .grad stays None after backward unless you call .retain_grad() first"))
    elif not info.requires_grad:
        blocks.append(Note("no gradient will be computed for it; to get one, create it with requires_grad=True or call .requires_grad_()"))
    return Section("Autograd", blocks)


def _aliases(info: TensorInfo) -> Section:
    if not info.aliases:
        blocks: list[Block] = [Note("no other variable shares its memory")]
    else:
        rows = [[a.name, a.relation, a.detail] for a in info.aliases[:MAX_ROWS]]
        blocks = [Table(["variable", "relation", "detail"], rows, total_rows=len(info.aliases))]
    conv = [[c.call, c.result, c.detail] for c in info.conversion]
    blocks.append(Table(["conversion", "result", "why"], conv, caption="NumPy <-> Torch conversions"))
    return Section("Aliases", blocks)


def _dtypes(info: TensorInfo) -> Section:
    mine = {info.dtype, info.equivalent_dtype}
    rows = [["→ " + d.dtype if d.dtype in mine else d.dtype, d.twin or "none", d.note or ""] for d in info.dtype_table]
    lead = f"{info.dtype} <-> {info.equivalent_dtype}" if info.equivalent_dtype else f"{info.dtype} has no twin: {info.equivalent_note}"
    return Section("Dtypes", [Note(lead, "ok" if info.equivalent_dtype else "warning"), Table(["torch dtype", "NumPy dtype", "note"], rows)])


def _pictures(info: TensorInfo) -> list[Section]:
    """The Pictures section (none when the tensor has no image, channel view or heatmap)."""
    blocks = picture_blocks(info.name, info.pictures) if info.pictures is not None else []
    return [Section("Pictures", blocks)] if blocks else []


@builds(TensorInfo)
def tensor_panel(info: TensorInfo) -> Panel:
    """The panel of one array or tensor."""
    bad = info.stats is not None and (info.stats.nan + info.stats.posinf + info.stats.neginf) > 0
    return Panel(
        title=f"tensorinfo · {truncate(info.name, 80)}",
        headline=_headline(info),
        sections=[_summary(info), *([sharding_section(info.sharding)] if info.sharding is not None else []), *_pictures(info), _layout(info), _values(info), _autograd(info), _aliases(info), _dtypes(info)],
        headline_level="warning" if bad else "info",
    )


#: What the module panel says when no forward pass was asked for.
LAYERS_HINT = "per-layer shapes and costs (MACs, memory, activations): %tensorinfo {name} --input x, or --input-size 8,3,32,32"


@builds(ModuleInfo)
def module_panel(info: ModuleInfo, layers_hint: bool = True) -> Panel:
    """The panel of a module: counts, devices, dtypes, each parameter, sharing, structure
    (and, with ``layers_hint``, how to get the per-layer table)."""
    summary = KeyValues(
        [
            ("type", info.type),
            ("parameters", fmt_number(info.parameters)),
            ("trainable", fmt_number(info.trainable_parameters)),
            ("parameter bytes", fmt_bytes(info.parameter_bytes)),
            ("buffer elements", fmt_number(info.buffers)),
            ("buffer bytes", fmt_bytes(info.buffer_bytes)),
            ("dtypes", ", ".join(f"{k} ({v:,} elements)" for k, v in info.dtypes.items()) or "-"),
            ("devices", ", ".join(f"{k} ({v} tensors)" for k, v in info.devices.items()) or "-"),
        ]
    )
    if info.local_parameters is not None:
        summary.rows[1:1] = [("parameters on this rank", f"{fmt_number(info.local_parameters)} (rank {info.rank}; {info.sharded} sharded tensors)")]
        summary.rows[4:4] = [("parameter bytes on this rank", fmt_bytes(info.local_parameter_bytes))]
    rows = [[r.name, r.kind, fmt_shape(r.shape) if r.shape is not None else "? (uninitialized)", r.dtype, r.device, fmt_number(r.numel), yes_no(r.trainable)] for r in info.rows[:MAX_ROWS]]
    headers = ["name", "kind", "shape", "dtype", "device", "elements", "trainable"]
    if info.sharded:
        headers = ["name", "kind", "global shape", "placement", "local shape", "dtype", "device", "global elements", "trainable"]
        rows = [
            [r.name, r.kind, fmt_shape(r.shape) if r.shape is not None else "? (uninitialized)", ", ".join(r.placements) if r.placements else "not sharded", fmt_shape(r.local_shape if r.placements else r.shape), r.dtype, r.device, fmt_number(r.numel), yes_no(r.trainable)]
            for r in info.rows[:MAX_ROWS]
        ]
    table = Table(headers, rows, total_rows=len(info.rows))
    shared: list[Block] = [Note("no tied or shared parameters")] if not info.shared else [
        Table(["names", "relation", "detail"], [[" & ".join(s["names"]), s["relation"], s["detail"]] for s in info.shared[:MAX_ROWS]], total_rows=len(info.shared))
    ]
    level: Level = "warning" if info.notes else "info"
    return Panel(
        title=f"tensorinfo · {truncate(info.name, 80)}",
        headline=info.summary(),
        sections=[
            Section("Summary", [summary] + [Note(n, "warning") for n in info.notes] + ([Note(LAYERS_HINT.format(name=truncate(info.name, 40)))] if layers_hint else [])),
            Section("Parameters", [table]),
            Section("Sharing", shared),
            Section("Structure", [Preformatted(info.structure)]),
        ],
        headline_level=level,
    )


def _groups(count: int) -> str:
    if count == 0:
        return "no variables share memory"
    return "1 group shares memory" if count == 1 else f"{count} groups share memory"


@builds(NamespaceInfo)
def namespace_panel(info: NamespaceInfo) -> Panel:
    """The panel of every array, tensor and module in the namespace."""
    ordered = sorted(info.entries, key=lambda e: (e.group is None, e.group or 0, e.name))
    rows = [
        [e.name, short_type(e.type), e.dtype, fmt_shape(e.shape), e.device, fmt_bytes(e.nbytes, exact=False), "-" if e.group is None else f"#{e.group}", e.relation or ""]
        for e in ordered[:MAX_ROWS]
    ]
    blocks: list[Block] = [Table(["name", "type", "dtype", "shape", "device", "bytes", "memory group", "relation"], rows, total_rows=len(ordered))]
    if not info.entries:
        blocks = [Note("no arrays, tensors or modules in the namespace yet")]
    groups = [Note(f"group #{i}: {', '.join(g)} share memory") for i, g in enumerate(info.groups[:MAX_ROWS], start=1)]
    return Panel(
        title="tensorinfo · namespace",
        headline=f"{len(info.entries)} arrays, tensors and modules, {fmt_bytes(info.total_bytes)} of memory in arrays and tensors (shared bytes counted once); {_groups(len(info.groups))}",
        sections=[Section("Variables", blocks), Section("Shared memory", groups or [Note("no two variables share memory")])] + ([Section("Notes", [Note(n) for n in info.notes])] if info.notes else []),
    )
