"""Compatibility: the statistics now live in :mod:`tensormagic.engine.tensorinfo.statistics`.

Kept for the ``%%autograd`` engine, which takes gradient norms through :func:`cpu_moments`,
and for ``from tensormagic.engine.stats import DEFAULT_BUDGET`` in existing code.
"""

from __future__ import annotations

from tensormagic.engine.tensorinfo.statistics import DEFAULT_BUDGET, ValueStats, cpu_moments, tensor_stats

__all__ = ["DEFAULT_BUDGET", "ValueStats", "cpu_moments", "tensor_stats"]
