"""What ``%tensorinfo model --input x`` reports: one row per module call, and the totals.

Plain values only (never tensors), so a report pins no memory.  :class:`LayersInfo` is the
module report of ``%tensorinfo model`` plus ``layers`` and ``totals``; ``to_dict()["layers"]``
and ``to_dict()["totals"]`` are JSON-ready.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tensormagic.engine.tensorinfo import ModuleInfo


@dataclass(kw_only=True)
class ActivationStats:
    """Statistics of the tensors one module call returned (over all of them)."""

    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    nan: int
    inf: int
    zero_fraction: float | None  # exact zeros / values read (dead ReLUs show as a high fraction)
    exact: bool  # False: estimated from a fixed-seed sample (``--budget``)
    values: int  # elements the outputs hold


@dataclass(kw_only=True)
class LayerRow:
    """One module call of the forward pass, in call order.

    ``macs``, ``flops`` and ``saved_bytes`` are this call's own ops (its children excluded), so
    each column sums over the rows to the total; the ``*_inclusive`` twins add the children.
    ``time_s`` is inclusive (the probe's own bookkeeping excluded).
    """

    index: int
    name: str
    type: str
    depth: int
    parent: int | None
    call: int  # 1 for a module's first call, 2 for its second...
    input_shape: list[list[int] | None]
    output_shape: list[list[int] | None]
    parameters: int  # own (direct) parameters, a tied one counted in every module that holds it
    trainable: int  # of which require grad
    tied_parameters: int  # own parameters also held by another module (counted once in the totals)
    macs: int
    flops: int
    macs_inclusive: int
    flops_inclusive: int
    activation_bytes: int  # bytes of the tensors the call returned
    saved_bytes: int
    saved_bytes_inclusive: int
    time_s: float
    stats: ActivationStats | None
    nonfinite_origin: bool = False  # the first call whose output holds NaN/inf while its inputs do not
    dtype: str | None = None  # of the first tensor output
    device: str | None = None


@dataclass(kw_only=True)
class LayerTotals:
    """Totals of one forward pass."""

    parameters: int  # each parameter once, however many modules hold it
    trainable_parameters: int
    parameter_bytes: int
    tied_parameters: int  # parameters held by more than one module (counted once above)
    macs: int
    flops: int
    peak_activation_bytes: int  # most bytes of tensors the forward created alive at once
    saved_bytes: int  # bytes the forward's ops saved for backward (distinct storages)
    output_bytes: int
    time_s: float
    calls: int
    input_shape: list[list[int] | None]
    output_shape: list[list[int] | None]
    uncounted_ops: dict[str, int] = field(default_factory=dict)  # ops with no FLOP formula: calls
    not_called: list[str] = field(default_factory=list)  # submodules the forward never called
    stats_budget: int = 0
    grad_enabled: bool = True  # False: no parameter or input requires grad, so nothing is saved


@dataclass(kw_only=True, repr=False)
class LayersInfo(ModuleInfo):
    """A module's report with the per-layer table of one forward pass."""

    layers: list[LayerRow] = field(default_factory=list)
    totals: LayerTotals | None = None
    layer_notes: list[str] = field(default_factory=list)


    def summary(self) -> str:
        t = self.totals
        if t is None:
            return super().summary()
        return f"{self.name}: {self.type}, {t.parameters:,} parameters, {t.macs:,} MACs, {len(self.layers):,} module calls"


__all__ = ["ActivationStats", "LayerRow", "LayerTotals", "LayersInfo"]
