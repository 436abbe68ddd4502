"""``%tensorinfo``'s engine: the whole truth about one array, tensor or module.

Pure: takes objects and a namespace, returns report dataclasses of plain values.  Modules, one
job each:

- :mod:`.dispatch`: which report an object gets (:func:`inspect_object`).
- :mod:`.tensor`, :mod:`.array`, :mod:`.module`: the report of a tensor, a NumPy array, a module.
- :mod:`.overview`: every array, tensor and module of a namespace, grouped by shared memory.
- :mod:`.aliases`: which other variables share an object's memory; :mod:`.alias_index`: the
  index that keeps that fast in a namespace of 100,000 arrays.
- :mod:`.memory`: where an array's bytes live, and exact overlap checks.
- :mod:`.dtypes`: NumPy <-> Torch dtype twins.
- :mod:`.conversions`: what ``.numpy()``, ``torch.from_numpy``... would do.
- :mod:`.statistics`: value statistics at memory speed (with the optional C pass ``_fused.c``).
- :mod:`.reports`: the report dataclasses; :mod:`.guard`: a report never raises.
"""

from __future__ import annotations

from tensormagic.engine.namespace import is_inspectable
from tensormagic.engine.tensorinfo.aliases import find_aliases
from tensormagic.engine.tensorinfo.array import inspect_array
from tensormagic.engine.tensorinfo.dispatch import UninspectableError, inspect_object
from tensormagic.engine.tensorinfo.module import inspect_module
from tensormagic.engine.tensorinfo.overview import inspect_namespace
from tensormagic.engine.tensorinfo.reports import (
    Alias,
    Conversion,
    ModuleInfo,
    NamespaceEntry,
    NamespaceInfo,
    ParameterRow,
    TensorInfo,
)
from tensormagic.engine.tensorinfo.statistics import DEFAULT_BUDGET
from tensormagic.engine.tensorinfo.tensor import inspect_tensor

__all__ = [
    "DEFAULT_BUDGET",
    "Alias",
    "Conversion",
    "ModuleInfo",
    "NamespaceEntry",
    "NamespaceInfo",
    "ParameterRow",
    "TensorInfo",
    "UninspectableError",
    "find_aliases",
    "inspect_array",
    "inspect_module",
    "inspect_namespace",
    "inspect_object",
    "inspect_tensor",
    "is_inspectable",
]
