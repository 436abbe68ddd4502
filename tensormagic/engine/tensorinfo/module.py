"""The report of a ``torch.nn.Module``: its parameters and buffers, where they live, what is tied."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import torch

from tensormagic.engine.naming import (
    UNINITIALIZED,
    describe_exception,
    is_uninitialized,
    type_name,
)
from tensormagic.engine.sharding.detect import as_dtensor, is_fsdp_module
from tensormagic.engine.sharding.layout import placement_text
from tensormagic.engine.tensorinfo import memory
from tensormagic.engine.tensorinfo.reports import ModuleInfo, ParameterRow


def inspect_module(name: str, module: torch.nn.Module, max_rows: int = 200) -> ModuleInfo:
    """Summarise a module: parameter and buffer counts, dtypes, devices, bytes, sharing."""
    rows: list[ParameterRow] = []
    seen: dict[int, str] = {}
    shared: list[dict[str, Any]] = []
    dtypes: Counter[str] = Counter()
    devices: Counter[str] = Counter()
    params = trainable = pbytes = nbuf = bbytes = 0
    sharded = local_params = local_pbytes = local_bbytes = 0
    lazy: list[str] = []
    regions: list[tuple[str, memory.MemoryRegion | None, torch.Tensor]] = []
    for kind, items in (("parameter", module.named_parameters(remove_duplicate=False)), ("buffer", module.named_buffers(remove_duplicate=False))):
        for pname, p in items:
            if p is None:
                continue
            if id(p) in seen:
                shared.append({"names": [seen[id(p)], pname], "relation": "same object", "detail": f"tied: the same {kind} is registered twice"})
                continue
            seen[id(p)] = pname
            if is_uninitialized(p):
                lazy.append(pname)
                devices[str(p.device)] += 1
                if len(rows) < max_rows:
                    rows.append(ParameterRow(name=pname, kind=kind, shape=None, dtype=str(p.dtype), device=str(p.device), numel=0, nbytes=0, trainable=bool(p.requires_grad), note=UNINITIALIZED))
                continue
            size = p.numel() * p.element_size()  # a DTensor's numel is the global tensor's
            dt = as_dtensor(p)
            local = dt.to_local() if dt is not None else p
            local_size = local.numel() * local.element_size()
            sharded += dt is not None
            if kind == "parameter":
                local_params += local.numel()
                local_pbytes += local_size
            else:
                local_bbytes += local_size
            dtypes[str(p.dtype)] += p.numel()
            devices[str(p.device)] += 1
            if kind == "parameter":
                params += p.numel()
                pbytes += size
                trainable += p.numel() if p.requires_grad else 0
            else:
                nbuf += p.numel()
                bbytes += size
            regions.append((pname, memory.memory_region(local), local))
            if len(rows) < max_rows:
                row = ParameterRow(name=pname, kind=kind, shape=list(p.shape), dtype=str(p.dtype), device=str(p.device), numel=p.numel(), nbytes=size, trainable=bool(p.requires_grad))
                if dt is not None:
                    row = dataclasses.replace(row, placements=[placement_text(q) for q in dt.placements], local_shape=list(local.shape), local_nbytes=local_size)
                rows.append(row)
    for i, j in memory.overlapping_pairs([r for _, r, _ in regions]):
        rel = memory.relation(regions[i][2], regions[j][2], regions[i][1], regions[j][1])
        if rel is not None:
            shared.append({"names": [regions[i][0], regions[j][0]], "relation": rel[0], "detail": rel[1]})
    notes: list[str] = []
    if lazy:
        shown = ", ".join(lazy[:5]) + (" ..." if len(lazy) > 5 else "")
        notes.append(f"a lazy module: {len(lazy)} parameter{'s' if len(lazy) != 1 else ''} or buffer{'s' if len(lazy) != 1 else ''} {UNINITIALIZED} ({shown}); the counts and bytes are of the others")
    rank = None
    if sharded:
        import torch.distributed as dist

        rank = int(dist.get_rank()) if dist.is_initialized() else 0
        fsdp = " (FSDP2)" if is_fsdp_module(module) or any(is_fsdp_module(m) for m in module.modules()) else ""
        notes.append(f"{sharded} sharded parameter{'s' if sharded != 1 else ''} or buffer{'s' if sharded != 1 else ''}{fsdp}: counts and bytes are of the global tensors; rank {rank} holds {local_params:,} parameter elements ({local_pbytes:,} bytes) of them")
    if len(devices) > 1:
        notes.append(f"parameters and buffers sit on {len(devices)} devices ({', '.join(devices)}): inputs must match each layer's device")
    try:
        structure_lines = str(module).splitlines()
    except Exception as exc:  # noqa: BLE001 - a user's extra_repr/__repr__ may raise: report, never raise
        structure_lines = [f"{type(module).__name__}(...)  # repr raised {describe_exception(exc)}"]
        notes.append(f"printing the module raised {describe_exception(exc)}")
    structure = "\n".join(structure_lines[:60]) + (f"\n... ({len(structure_lines) - 60} more lines)" if len(structure_lines) > 60 else "")
    return ModuleInfo(
        name=name,
        type=type_name(module),
        parameters=params,
        trainable_parameters=trainable,
        parameter_bytes=pbytes,
        buffers=nbuf,
        buffer_bytes=bbytes,
        dtypes=dict(dtypes),
        devices=dict(devices),
        rows=rows,
        shared=shared,
        structure=structure,
        notes=notes,
        uninitialized=len(lazy),
        sharded=sharded,
        local_parameters=local_params if sharded else None,
        local_parameter_bytes=local_pbytes if sharded else None,
        local_buffer_bytes=local_bbytes if sharded else None,
        rank=rank,
    )
