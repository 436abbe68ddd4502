"""What a forward pass may change, put back exactly as it was (parameters it writes: named).

A forward in training mode updates BatchNorm's running statistics and ``num_batches_tracked``,
draws dropout masks from the global generators, and may flip flags or swap buffers.  The guard
records the random generators (torch's CPU and initialised CUDA ones, Python's and NumPy's),
each module's ``training`` flag and registered buffers (copies of them), and restores all of it
on exit, whether or not the forward raised.  It also records each parameter's version, so that
a parameter the forward wrote in place is named (undoing that would need a copy of every
parameter).  A buffer whose
values are bitwise the same is left alone (BatchNorm's kernels update the running statistics
without moving their version counter, so values, not versions, are compared).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np
import torch


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equal values (NaN equals NaN), on the tensors' device."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    with torch.no_grad():
        if a.is_floating_point() or a.is_complex():
            return bool(((a == b) | (a.isnan() & b.isnan())).all())
        return bool(torch.equal(a, b))


@dataclass
class _Buffer:
    module: torch.nn.Module
    attr: str  # the name in module._buffers
    name: str  # the qualified name, for notes
    tensor: torch.Tensor
    copy: torch.Tensor | None


@dataclass
class ModelStateGuard:
    """Context manager: snapshot on enter, restore on exit.  ``changed_parameters`` lists the
    parameters the forward wrote in place (which cannot be undone without a copy of every
    parameter: they are named, never silently kept)."""

    model: torch.nn.Module
    changed_parameters: list[str] = field(default_factory=list)
    restored_buffers: list[str] = field(default_factory=list)
    _buffers: list[_Buffer] = field(default_factory=list)
    _training: list[tuple[torch.nn.Module, bool]] = field(default_factory=list)
    _buffer_names: list[tuple[torch.nn.Module, set[str]]] = field(default_factory=list)
    _params: list[tuple[str, torch.Tensor, int]] = field(default_factory=list)
    _rng: dict[str, Any] = field(default_factory=dict)

    def __enter__(self) -> ModelStateGuard:
        self._rng = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            self._rng["cuda"] = torch.cuda.get_rng_state_all()
        prefix = {id(m): n for n, m in self.model.named_modules(remove_duplicate=False)}
        for module in self.model.modules():
            self._training.append((module, module.training))
            self._buffer_names.append((module, set(module._buffers)))
            for name, buf in module._buffers.items():
                if buf is None:
                    continue
                with torch.no_grad():
                    copy = buf.detach().clone() if buf.device.type != "meta" else None
                self._buffers.append(_Buffer(module, name, f"{prefix.get(id(module), '')}.{name}".lstrip("."), buf, copy))
        self._params = [(n, p, p._version) for n, p in self.model.named_parameters()]
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.restore()

    def restore(self) -> None:
        """Put every recorded piece of state back (safe to call twice)."""
        for module, names in self._buffer_names:
            for extra in set(module._buffers) - names:  # a buffer the forward registered
                del module._buffers[extra]
        for b in self._buffers:
            if b.module._buffers.get(b.attr) is not b.tensor:
                b.module._buffers[b.attr] = b.tensor  # the forward swapped it
            if b.copy is not None and not _same(b.tensor, b.copy):
                with torch.no_grad():
                    b.tensor.copy_(b.copy)
                if b.name not in self.restored_buffers:
                    self.restored_buffers.append(b.name)
        for module, flag in self._training:
            module.training = flag
        self.changed_parameters = [n for n, p, v in self._params if p._version != v]
        if "torch" in self._rng:
            torch.set_rng_state(self._rng["torch"])
            random.setstate(self._rng["python"])
            np.random.set_state(self._rng["numpy"])
        if "cuda" in self._rng:
            torch.cuda.set_rng_state_all(self._rng["cuda"])


__all__ = ["ModelStateGuard"]
