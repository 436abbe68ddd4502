"""``--check``: ``torch.autograd.gradcheck`` in float64 on copies of the cell's small inputs.

Pure (torch only).  With ``--check`` the op recorder also keeps a tape of the torch calls the cell
made (function, arguments, result).  :func:`check_gradients` replays the part of the tape that
depends on the inputs, on float64 copies of them, as the function gradcheck differentiates; the
replay is first compared with what the cell computed, so a cell the tape cannot reproduce (Python
arithmetic on ``.item()``, random ops on the inputs' path...) is reported as not checked instead of
as wrong.  The tape holds the cell's tensors until the check is done: it is only kept with
``--check``, meant for small inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

#: Input elements gradcheck perturbs at most (all inputs together): one forward replay each, twice.
CHECK_MAX_ELEMENTS = 256
#: Tape entries replayed at most.
CHECK_MAX_OPS = 20_000

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


def _substitute(value: Any, env: dict[int, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        new = env.get(id(value))
        if new is not None:
            return new
        if value.is_floating_point() and value.dtype != torch.float64:
            return value.detach().double()
        return value
    if isinstance(value, tuple):
        return tuple(_substitute(v, env) for v in value)
    if isinstance(value, list):
        return [_substitute(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, env) for k, v in value.items()}
    if isinstance(value, torch.dtype) and value in (torch.float32, torch.float16, torch.bfloat16):
        return torch.float64
    return value


def replay(tape: Sequence[TapeEntry], inputs: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor], new_inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Recompute ``outputs`` from ``new_inputs`` in place of ``inputs`` by replaying the tape."""
    env: dict[int, torch.Tensor] = {id(t): n for t, n in zip(inputs, new_inputs)}
    depends: set[int] = set(env)
    leaves = set(env)
    for entry in tape:
        used = _walk((entry.args, entry.kwargs))
        if not entry.grad_enabled or not any(id(t) in depends for t in used):
            continue
        name = _name(entry.func)
        if name.endswith("_") and not name.endswith("__") and used and id(used[0]) in leaves:
            continue  # an in-place change of an input leaf (initialisation): autograd allows it only under no_grad
        result = entry.func(*_substitute(entry.args, env), **_substitute(entry.kwargs, env))
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


__all__ = ["CHECK_MAX_ELEMENTS", "TapeEntry", "check_gradients", "replay"]
