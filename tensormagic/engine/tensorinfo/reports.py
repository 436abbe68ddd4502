"""The reports ``%tensorinfo`` returns: plain values only (never tensors, so no memory is pinned)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tensormagic.engine.report import Report
from tensormagic.engine.sharding.layout import ShardingInfo
from tensormagic.engine.tensorinfo.dtypes import DtypeTwin
from tensormagic.engine.tensorinfo.pictures.reports import Pictures
from tensormagic.engine.tensorinfo.statistics import Histogram, ValueStats


@dataclass(kw_only=True)
class Alias:
    """Another variable whose memory overlaps the inspected object's."""

    name: str
    relation: str
    detail: str


@dataclass(kw_only=True)
class Conversion:
    """What one NumPy <-> Torch conversion would do with the object."""

    call: str
    result: str  # "shares memory" | "copies" | "fails" | "not applicable" | "same object"
    detail: str


@dataclass(kw_only=True, repr=False)
class TensorInfo(Report):
    """Everything about one array or tensor (see ``%tensorinfo?``)."""

    name: str
    type: str
    dtype: str
    equivalent_dtype: str | None
    equivalent_note: str | None
    shape: list[int] | None
    ndim: int
    numel: int
    itemsize: int
    strides: list[int] | None
    byte_strides: list[int] | None
    contiguous: bool | None
    memory_format: str
    storage_offset: int | None
    nbytes: int
    storage_nbytes: int | None
    device: str
    layout: str
    requires_grad: bool | None
    is_leaf: bool | None
    grad_fn: str | None
    grad: str | None
    version: int | None
    stats: ValueStats | None
    stats_note: str | None
    aliases: list[Alias]
    conversion: list[Conversion]
    dtype_table: list[DtypeTwin]
    histogram: Histogram | None = None
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    pictures: Pictures | None = None  # None: none asked for, or no values to draw
    sharding: ShardingInfo | None = None  # a DTensor's layout (None: not sharded)


    def summary(self) -> str:
        if self.sharding is not None:
            s = self.sharding
            return f"{self.name}: DTensor {self.dtype} {list(s.global_shape)} ({', '.join(s.placements)}), local {list(s.local_shape)} on rank {s.rank}"
        shape = "x".join(map(str, self.shape)) if self.shape else ("scalar" if self.shape == [] else "?")
        return f"{self.name}: {self.type} {self.dtype} [{shape}] on {self.device}"


@dataclass(kw_only=True)
class ParameterRow:
    """One parameter or buffer of a module."""

    name: str
    kind: str  # "parameter" | "buffer"
    shape: list[int] | None  # None: uninitialized (a lazy module's)
    dtype: str
    device: str
    numel: int
    nbytes: int
    trainable: bool
    note: str | None = None
    placements: list[str] | None = None  # a DTensor parameter's (FSDP2: ["Shard(0)"]); None: not sharded
    local_shape: list[int] | None = None  # a DTensor parameter's shard on this rank
    local_nbytes: int | None = None


@dataclass(kw_only=True, repr=False)
class ModuleInfo(Report):
    """Summary of a ``torch.nn.Module``'s parameters and buffers."""

    name: str
    type: str
    parameters: int
    trainable_parameters: int
    parameter_bytes: int
    buffers: int
    buffer_bytes: int
    dtypes: dict[str, int]
    devices: dict[str, int]
    rows: list[ParameterRow]
    shared: list[dict[str, Any]]
    structure: str
    notes: list[str] = field(default_factory=list)
    uninitialized: int = 0  # parameters and buffers of a lazy module not created yet
    #: DTensor parameters and buffers (FSDP2, tensor parallel): how many, and what this rank holds
    #: of the global counts above (None: nothing is sharded, this rank holds everything)
    sharded: int = 0
    local_parameters: int | None = None
    local_parameter_bytes: int | None = None
    local_buffer_bytes: int | None = None
    rank: int | None = None


    def summary(self) -> str:
        lazy = f" (and {self.uninitialized} uninitialized)" if self.uninitialized else ""
        if self.local_parameters is not None:
            return f"{self.name}: {self.type}, {self.parameters:,} parameters ({self.local_parameters:,} on rank {self.rank}, {self.sharded} sharded){lazy} on {', '.join(self.devices) or 'no device'}"
        return f"{self.name}: {self.type}, {self.parameters:,} parameters{lazy} on {', '.join(self.devices) or 'no device'}"


@dataclass(kw_only=True)
class NamespaceEntry:
    """One row of the whole-namespace table."""

    name: str
    type: str
    dtype: str
    shape: list[int] | None
    device: str
    nbytes: int
    group: int | None  # entries sharing memory have the same group number
    relation: str | None


@dataclass(kw_only=True, repr=False)
class NamespaceInfo(Report):
    """Every array, tensor and module in the namespace, grouped by shared memory."""

    entries: list[NamespaceEntry]
    groups: list[list[str]]
    total_bytes: int
    notes: list[str] = field(default_factory=list)


    def summary(self) -> str:
        return f"{len(self.entries)} arrays, tensors and modules, {len(self.groups)} groups sharing memory"
