"""``%tensorinfo EXPR``: which report an object gets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from tensormagic.engine.tensorinfo.array import inspect_array
from tensormagic.engine.tensorinfo.module import inspect_module
from tensormagic.engine.tensorinfo.reports import ModuleInfo, TensorInfo
from tensormagic.engine.tensorinfo.statistics import DEFAULT_BUDGET
from tensormagic.engine.tensorinfo.tensor import inspect_tensor

def inspect_object(name: str, obj: Any, namespace: Mapping[str, Any] | None = None, budget: int = DEFAULT_BUDGET, hidden: frozenset[str] | set[str] = frozenset()) -> TensorInfo | ModuleInfo:
    """Dispatch on the object's kind; raises TypeError for objects that are not inspectable."""
    if isinstance(obj, torch.Tensor):
        return inspect_tensor(name, obj, namespace, budget, hidden)
    if isinstance(obj, (np.ndarray, np.generic)):
        return inspect_array(name, obj, namespace, budget, hidden)
    if isinstance(obj, torch.nn.Module):
        return inspect_module(name, obj)
    raise TypeError(f"{name} is a {type(obj).__name__}, not an array, tensor or module")
