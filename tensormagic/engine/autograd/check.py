"""``--check``: ``torch.autograd.gradcheck`` in float64 on copies of the cell's small inputs.

With ``--check`` a :class:`TapeMode` keeps a tape of the torch calls the cell made (function,
arguments, result; a custom ``autograd.Function`` as one call).  :func:`check_gradients` replays
the part of the tape that depends on the inputs, on float64 copies of them, as the function
gradcheck differentiates.  Every other tensor a replayed call touches is copied once per replay
too, so in-place ops (an accumulator, BatchNorm's running statistics) change the copies, never
the user's data.  The replay is first compared with what the cell computed, so a cell the tape
cannot reproduce (Python arithmetic on ``.item()``, randomness...) is reported as not checked
instead of as wrong.  The tape is bounded (:data:`CHECK_MAX_OPS` calls, :data:`CHECK_MAX_BYTES`
of results) and dropped after the check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

#: Input elements gradcheck perturbs at most (all inputs together): one forward replay each, twice.
CHECK_MAX_ELEMENTS = 256
#: Tape entries recorded at most.
CHECK_MAX_OPS = 20_000
#: Bytes of results the tape keeps alive at most (a training loop would keep every step's tensors).
CHECK_MAX_BYTES = 64 * 2**20

_SKIP_NAMES = {
    "backward",
    "register_hook",
    "register_post_accumulate_grad_hook",
    "retain_grad",
    "requires_grad_",
    "grad",
    "__get__",
    "__set__",
    "item",
    "tolist",
    "numpy",
    "__repr__",
    "__format__",
    "__str__",
}


@dataclass
class TapeEntry:
    """One torch call of the cell."""

    func: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    result: Any
    grad_enabled: bool = True  # made under no_grad (initialisation, a no_grad block): a constant


class TapeMode(TorchFunctionMode):
    """Records the torch calls of the cell (``--check`` only), within the tape's bounds."""

    def __init__(self) -> None:
        super().__init__()
        self.tape: list[TapeEntry] = []
        self.paused = False
        self.full: str | None = None  # why recording stopped
        self._bytes = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        __tracebackhide__ = True
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if not self.paused:
            self.record(TapeEntry(func, args, kwargs, result, torch.is_grad_enabled()))
        return result

    def record(self, entry: TapeEntry) -> None:
        if self.full is not None:
            return
        for t in _walk(entry.result):
            try:
                self._bytes += t.numel() * t.element_size()
            except Exception:  # noqa: BLE001
                pass
        if len(self.tape) >= CHECK_MAX_OPS:
            self.stop(f"the cell made more than {CHECK_MAX_OPS:,} torch calls")
        elif self._bytes > CHECK_MAX_BYTES:
            self.stop(f"the cell's results add up to more than {CHECK_MAX_BYTES // 2**20} MiB")
        else:
            self.tape.append(entry)

    def stop(self, why: str) -> None:
        self.full = why
        self.tape.clear()  # what it held is freed now, not at the end of the cell


@contextmanager
def custom_functions_as_one_call(mode: TapeMode) -> Iterator[None]:
    """``autograd.Function.apply`` records one tape entry per call (the replay runs the
    Function itself, forward and backward, not the ops inside its forward)."""
    original = torch.autograd.Function.__dict__["apply"]
    func = original.__func__

    def apply(cls: Any, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        if mode.paused:
            return func(cls, *args, **kwargs)
        mode.paused = True
        try:
            result = func(cls, *args, **kwargs)
        finally:
            mode.paused = False
        mode.record(TapeEntry(_BoundApply(func, cls), args, kwargs, result, torch.is_grad_enabled()))
        return result

    replacement = classmethod(apply)
    torch.autograd.Function.apply = replacement  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        if torch.autograd.Function.__dict__.get("apply") is replacement:
            torch.autograd.Function.apply = original  # type: ignore[method-assign]


class _BoundApply:
    """``MyFunction.apply`` as a plain callable, for the replay."""

    def __init__(self, func: Callable[..., Any], cls: Any) -> None:
        self.func = func
        self.cls = cls
        self.__name__ = f"{cls.__name__}.apply"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(self.cls, *args, **kwargs)


def _name(func: Any) -> str:
    return getattr(func, "__name__", "") or ""


def _walk(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        out: list[torch.Tensor] = []
        for v in value:
            out += _walk(v)
        return out
    if isinstance(value, dict):
        out = []
        for v in value.values():
            out += _walk(v)
        return out
    return []


def _substitute(value: Any, env: dict[int, torch.Tensor], copies: dict[int, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        new = env.get(id(value))
        if new is not None:
            return new
        copy = copies.get(id(value))
        if copy is None:  # a tensor from outside the replay: a copy, so in-place ops change only it
            with torch.no_grad():
                copy = value.detach().to(torch.float64) if value.is_floating_point() else value.detach().clone()
                if copy.data_ptr() == value.data_ptr():
                    copy = copy.clone()
            copies[id(value)] = copy
        return copy
    if isinstance(value, tuple):
        return tuple(_substitute(v, env, copies) for v in value)
    if isinstance(value, list):
        return [_substitute(v, env, copies) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, env, copies) for k, v in value.items()}
    if isinstance(value, torch.dtype) and value in (torch.float32, torch.float16, torch.bfloat16):
        return torch.float64
    return value


def replay(tape: Sequence[TapeEntry], inputs: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor], new_inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Recompute ``outputs`` from ``new_inputs`` in place of ``inputs`` by replaying the tape."""
    env: dict[int, torch.Tensor] = {id(t): n for t, n in zip(inputs, new_inputs)}
    copies: dict[int, torch.Tensor] = {}
    depends: set[int] = set(env)
    leaves = set(env)
    for entry in tape:
        used = _walk((entry.args, entry.kwargs))
        if not entry.grad_enabled or not any(id(t) in depends for t in used):
            continue
        name = _name(entry.func)
        if name.endswith("_") and not name.endswith("__") and used and id(used[0]) in leaves:
            continue  # an in-place change of an input leaf (initialisation): autograd allows it only under no_grad
        result = entry.func(*_substitute(entry.args, env, copies), **_substitute(entry.kwargs, env, copies))
        originals = _walk(entry.result)
        news = _walk(result)
        for o, n in zip(originals, news):
            env[id(o)] = n
            depends.add(id(o))
    missing = [o for o in outputs if id(o) not in env]
    if missing:
        raise LookupError("an output was not made by torch calls from the inputs")
    return tuple(env[id(o)] for o in outputs)


def check_gradients(tape: Sequence[TapeEntry], inputs: Sequence[tuple[str, torch.Tensor]], outputs: Sequence[torch.Tensor]) -> tuple[bool | None, str]:
    """Run gradcheck on the replayed computation; ``(ok, message)``, ok None when not checked."""
    if not inputs:
        return None, "nothing to check: no input requires grad"
    total = sum(t.numel() for _, t in inputs)
    if total > CHECK_MAX_ELEMENTS:
        return None, f"not checked: the inputs have {total:,} elements, more than {CHECK_MAX_ELEMENTS:,} (gradcheck perturbs each one); check a smaller example"
    if len(tape) > CHECK_MAX_OPS:
        return None, f"not checked: the cell made {len(tape):,} torch calls, more than {CHECK_MAX_OPS:,}"
    tensors = [t for _, t in inputs]
    if any(not (t.is_floating_point() or t.is_complex()) for t in tensors):
        return None, "not checked: an input is not floating point"
    entries = [e for e in tape if _name(e.func) not in _SKIP_NAMES]
    with torch.no_grad():
        copies = [t.detach().to(torch.complex128 if t.is_complex() else torch.float64).clone() for t in tensors]
    try:
        with torch.no_grad():
            again = replay(entries, tensors, outputs, copies)
    except Exception as exc:  # noqa: BLE001 - the replay is best effort: say why it could not run
        return None, f"not checked: the cell's computation could not be replayed from its torch calls ({type(exc).__name__}: {exc})"
    for o, a in zip(outputs, again):
        if tuple(o.shape) != tuple(a.shape) or not torch.allclose(o.detach().to(a.dtype), a, rtol=1e-3, atol=1e-5, equal_nan=True):
            return None, "not checked: replaying the cell's torch calls does not give the same output (Python arithmetic on .item(), randomness or in-place changes on the way)"
    for c in copies:
        c.requires_grad_(True)

    def fn(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return replay(entries, tensors, outputs, xs)

    names = ", ".join(n for n, _ in inputs)
    try:
        with torch.enable_grad():
            ok = torch.autograd.gradcheck(fn, tuple(copies), eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True)
    except Exception as exc:  # noqa: BLE001 - gradcheck's own explanation is the message
        first = str(exc).strip().splitlines()
        detail = " ".join(first[:6])[:600] if first else type(exc).__name__
        return False, f"gradcheck FAILED in float64 for {names}: the analytical gradients differ from finite differences: {detail}"
    return bool(ok), f"gradcheck passed in float64 for {names} ({total:,} elements): analytical gradients match finite differences"


__all__ = ["CHECK_MAX_BYTES", "CHECK_MAX_ELEMENTS", "CHECK_MAX_OPS", "TapeEntry", "TapeMode", "check_gradients", "custom_functions_as_one_call", "replay"]
