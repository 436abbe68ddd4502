"""``%%autograd``'s engine: observe what a cell does with autograd, then explain every derivative.

Pure (torch only).  The modules, in the order a run uses them:

* :mod:`.options` - what a run is asked for (the magic's options), and the checks on them;
* :mod:`.source` - what the cell's source says (assignments, uses, ``.detach()``/``no_grad`` cuts);
* :mod:`.guards` - context managers, each changing and restoring one piece of global state;
* :mod:`.lines` - which cell line made which graph node;
* :mod:`.modules` - which module call made which graph node (global module hooks, cell only);
* :mod:`.recorder` - every backward / ``torch.autograd.grad`` call of the cell, observed, into
  the :mod:`.records` of each call; :mod:`.targets` (the tensors a call gives gradients for),
  :mod:`.capture` (the removable hooks that read a call's gradients as it runs), :mod:`.repeat`
  (a training loop's later calls, with the least work, its steps folded into one record) and
  :mod:`.settle` (after the cell: what a loop's last call left to read, and its own graph);
* :mod:`.walk` (live graph -> :mod:`.graph`, the graph as plain data; :mod:`.nodes` names each
  node, its cell line and module) and :mod:`.keeper` (the safe teardown of deep graphs);
* :mod:`.naming` - tensor -> names, from what the cell mentions;
* :mod:`.summary` - gradients summarised without keeping them;
* :mod:`.passes`, :mod:`.extra`, :mod:`.jacobian`, :mod:`.check` - the magic's own computations: side-effect
  free, bounded, labelled, never over user code;
* :mod:`.outputs`, :mod:`.rows`, :mod:`.changes`, :mod:`.wrt`, :mod:`.health`,
  :mod:`.summaries` - the report's parts;
* :mod:`.report` - the report dataclasses; :mod:`.session` - one run, orchestrated;
* :mod:`.block` - the same observer around a ``with`` block of ordinary Python
  (``tensormagic.autograd()``).
"""

from tensormagic.engine.autograd.options import (
    DEFAULT_EXTRA_SECONDS,
    DEFAULT_JACOBIAN_BUDGET,
    AutogradOptions,
    AutogradUsageError,
    check_expressions,
    split_names,
)
from tensormagic.engine.autograd.report import (
    AutogradReport,
    CheckInfo,
    CostInfo,
    GradientRow,
    HealthRow,
    JacobianInfo,
    NotComputed,
    OutputInfo,
    Status,
)
from tensormagic.engine.autograd.session import AutogradSession

__all__ = [
    "DEFAULT_EXTRA_SECONDS",
    "DEFAULT_JACOBIAN_BUDGET",
    "AutogradOptions",
    "AutogradReport",
    "AutogradSession",
    "AutogradUsageError",
    "CheckInfo",
    "CostInfo",
    "GradientRow",
    "HealthRow",
    "JacobianInfo",
    "NotComputed",
    "OutputInfo",
    "Status",
    "check_expressions",
    "split_names",
]
