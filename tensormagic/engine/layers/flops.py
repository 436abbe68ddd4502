"""FLOPs as torch counts them: ``torch.utils.flop_counter.FlopCounterMode``.

The probe reads the counter's running total before and after each module call, so every call
gets its own count (FlopCounterMode itself sums calls of one module by name).  One formula is
added: on the CPU, ``scaled_dot_product_attention`` runs as
``aten._scaled_dot_product_flash_attention_for_cpu``, which torch's registry misses (attention
would count 0 there); it gets the registry's own SDPA formula.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils import flop_counter


def _cpu_flash_sdpa(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """Torch's SDPA formula, for the CPU flash kernel (called with shapes, not tensors)."""
    return int(flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape))


def extra_formulas() -> dict[Any, Any]:
    """Formulas the registry lacks, for ops this torch has."""
    extra: dict[Any, Any] = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None and op not in flop_counter.flop_registry:
        extra[op] = _cpu_flash_sdpa
    return extra


def flop_counter_mode() -> flop_counter.FlopCounterMode:
    """A silent FlopCounterMode with the extra formulas."""
    return flop_counter.FlopCounterMode(display=False, custom_mapping=extra_formulas())


def has_formula(counter: flop_counter.FlopCounterMode, packet: Any) -> bool:
    """Does ``counter`` count the op (an ``OpOverloadPacket``)?"""
    return packet in counter.flop_registry


def total_flops(counter: flop_counter.FlopCounterMode) -> int:
    """The counter's running total so far."""
    return int(counter.get_total_flops())


__all__ = ["extra_formulas", "flop_counter_mode", "has_formula", "total_flops"]
