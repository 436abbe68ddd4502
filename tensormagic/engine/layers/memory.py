"""Activation memory of one forward pass: what was alive at once, and what was saved for backward.

:class:`LiveTensors` is a ``TorchDispatchMode`` that sees every tensor an op returns, counts the
bytes of each storage once while any tensor on it is alive (a weak reference per tensor, so it
keeps nothing alive) and records the peak.  Parameters, buffers and the inputs are not
activations: their storages are left out.  It also counts the ops that ran without a FLOP formula
(torch's FlopCounterMode gives them 0).

:class:`SavedTensors` is a pair of saved-tensor hooks: each tensor an op saves for backward is
charged to the module call running at that moment, each storage once in the whole forward.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

#: Ops that only make views or move metadata: never costs, so not "uncounted".
_FREE_OPS = {
    "detach", "view", "_unsafe_view", "t", "transpose", "permute", "expand", "reshape", "unsqueeze",
    "squeeze", "select", "slice", "alias", "as_strided", "split", "split_with_sizes", "unbind",
    "chunk", "narrow", "flatten", "unflatten", "view_as", "expand_as", "lift_fresh", "empty_like",
    "empty", "new_empty", "empty_strided", "new_empty_strided", "_to_copy", "clone", "copy_",
    "contiguous", "zeros_like", "ones_like", "full_like", "zeros", "ones", "full", "scalar_tensor",
    "_local_scalar_dense", "is_same_size", "sym_size", "sym_stride", "sym_numel", "_reshape_alias",
}


def storage_key(t: torch.Tensor) -> int | None:
    """An id of the storage under ``t`` (shared by its views), or None for tensors without one."""
    try:
        return int(t.untyped_storage()._cdata)
    except Exception:  # noqa: BLE001 - sparse, nested, wrapper subclasses
        return None


def storage_bytes(t: torch.Tensor) -> int:
    """Bytes of the storage under ``t`` (its logical size when it has no plain storage)."""
    try:
        return int(t.untyped_storage().nbytes())
    except Exception:  # noqa: BLE001
        try:
            return int(t.numel() * t.element_size())
        except Exception:  # noqa: BLE001
            return 0


def storage_keys(tensors: Iterable[torch.Tensor]) -> set[int]:
    """The storage ids of ``tensors`` (those that have one)."""
    keys = {storage_key(t) for t in tensors}
    keys.discard(None)
    return keys  # type: ignore[return-value]


class LiveTensors(TorchDispatchMode):
    """Peak bytes of the storages the forward's ops created that were alive at once."""

    def __init__(self, skip: set[int], counted: Callable[[Any], bool]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # TorchDispatchMode.__init__ is unannotated
        self.skip = skip
        self.counted = counted  # does torch's flop counter have a formula for this op?
        self.live: dict[int, list[int]] = {}  # storage id -> [bytes, tensors alive on it]
        self.current = 0
        self.peak = 0
        self.uncounted: Counter[str] = Counter()
        self.paused = False

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self.live[key]
            self.current -= entry[0]

    def _track(self, t: torch.Tensor) -> None:
        key = storage_key(t)
        if key is None or key in self.skip:
            return
        entry = self.live.get(key)
        if entry is None:
            entry = self.live[key] = [storage_bytes(t), 0]
            self.current += entry[0]
            self.peak = max(self.peak, self.current)
        entry[1] += 1
        try:
            weakref.finalize(t, self._release, key)
        except TypeError:  # pragma: no cover - a tensor type without weak references
            entry[1] -= 1

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if self.paused:
            return out
        packet = getattr(func, "overloadpacket", func)
        name = str(getattr(packet, "__name__", packet))
        if name not in _FREE_OPS and name.rstrip("_") not in _FREE_OPS and not self.counted(packet):
            self.uncounted[f"aten.{name}"] += 1
        for leaf in tree_flatten(out)[0]:
            if isinstance(leaf, torch.Tensor):
                self._track(leaf)
        return out


class SavedTensors:
    """Saved-tensor hooks that charge each saved storage to the call running when it was saved."""

    def __init__(self, skip: set[int], current: Callable[[], int | None]) -> None:
        self.skip = skip
        self.current = current
        self.seen: set[int] = set()
        self.by_call: Counter[int] = Counter()
        self.total = 0
        self.outside = 0  # saved while no module call ran (cannot happen inside model(...))

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        key = storage_key(t)
        if key is not None and key not in self.skip and key not in self.seen:
            self.seen.add(key)
            size = storage_bytes(t)
            self.total += size
            call = self.current()
            if call is None:
                self.outside += size
            else:
                self.by_call[call] += size
        # A detached alias: the graph keeps the same memory alive as without the hook, and no
        # reference cycle (tensor -> grad_fn -> tensor) outlives the forward's outputs.
        return t.detach()

    @staticmethod
    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    def hooks(self) -> Any:
        """The context manager that installs the hooks."""
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)


__all__ = ["LiveTensors", "SavedTensors", "storage_bytes", "storage_key", "storage_keys"]
