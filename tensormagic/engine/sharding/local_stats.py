"""Statistics of this rank's local shard of a DTensor: no DTensor op runs, so nothing is communicated.

The numbers come from ``dt.to_local()`` (a plain tensor) through the usual statistics passes,
and say whose values they are: ``scope="local"`` and "local shard on rank r (rows a-b)", or for
a ``Partial`` placement ``scope="partial"``: the unreduced values, which are not the tensor's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tensormagic.engine.naming import describe_exception
from tensormagic.engine.sharding.layout import ShardingInfo, block_label
from tensormagic.engine.tensorinfo.statistics import (
    DEFAULT_BUDGET,
    Histogram,
    ValueStats,
    stats_and_sample,
    value_histogram,
)

if TYPE_CHECKING:
    import torch


def scope_label(info: ShardingInfo) -> str:
    """Whose values the local statistics are, in words."""
    where = block_label(info)
    if info.partial:
        ops = ", ".join(p for p in info.placements if p.startswith("Partial("))
        return f"partial values on rank {info.rank} ({where}): {ops} means the tensor is the reduction of these over ranks, so these are not the tensor's values (%tensorinfo --global reduces them first)"
    if all(k == "replicate" for k in info.placement_kinds):
        return f"local shard on rank {info.rank} (a full replica: {where})"
    return f"local shard on rank {info.rank} ({where})"


def local_stats(local: torch.Tensor, info: ShardingInfo, budget: int = DEFAULT_BUDGET) -> tuple[ValueStats | None, str | None, Histogram | None]:
    """Statistics and histogram of the local shard, labelled; ``(None, why, None)`` when empty."""
    if local.numel() == 0:
        return None, f"this rank's shard is empty (rank {info.rank} holds no element of the global {list(info.global_shape)}): no local statistics; %tensorinfo --global gives the whole tensor's", None
    try:
        stats, sample = stats_and_sample(local, budget)
    except Exception as exc:  # noqa: BLE001 - never raise on an exotic tensor
        return None, f"statistics unavailable: {describe_exception(exc)}", None
    label = scope_label(info)
    stats.over = label if stats.over == "values" else f"{stats.over} of the {label}"
    stats.scope = "partial" if info.partial else "local"
    histogram: Histogram | None
    try:
        histogram = value_histogram(local, stats.min, stats.max, sample=sample, stats=stats)
    except Exception:  # noqa: BLE001 - a histogram that fails leaves the numbers
        histogram = None
    return stats, None, histogram


__all__ = ["local_stats", "scope_label"]
