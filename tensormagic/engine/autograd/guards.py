"""Small context managers, each changing one piece of global state for the magic and putting back
exactly that piece afterwards (also on an exception or KeyboardInterrupt).

Only what the *magic* changes is put back.  What the cell itself changes at its top level (grad
mode, anomaly mode, the default device, a mode or saved-tensor hooks it leaves open) stays, as
in a plain cell.  Compose them with :class:`contextlib.ExitStack`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from tensormagic.engine.autograd.lines import LineTracer


@contextmanager
def patched(owner: Any, attr: str, replacement: Any) -> Iterator[None]:
    """``owner.attr = replacement`` for the block; put back after, unless someone else replaced
    it in the meantime (then theirs stays)."""
    original = owner.__dict__[attr] if isinstance(owner, type) and attr in owner.__dict__ else getattr(owner, attr)
    setattr(owner, attr, replacement)
    try:
        yield
    finally:
        current = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
        if current is replacement:
            setattr(owner, attr, original)


@contextmanager
def engine_calls(wrapper: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """Every gradient computation goes through ``wrapper(original, *args, **kwargs)``.

    ``torch.autograd.backward`` and ``torch.autograd.grad`` both call the module-level
    ``torch.autograd._engine_run_backward``, also when the cell reached them through
    ``from torch.autograd import grad`` in an earlier cell, ``Tensor.backward`` or
    ``torch.autograd.functional``; patching that one name sees them all.
    """
    module = torch.autograd
    original = module.__dict__["_engine_run_backward"]

    def run(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        return wrapper(original, *args, **kwargs)

    with patched(module, "_engine_run_backward", run):
        yield original


@contextmanager
def hook_registrations(note: Callable[[str], None]) -> Iterator[None]:
    """Note each tensor hook and ``retain_grad`` the cell registers (the magic never runs an
    extra backward pass over a graph that may hold one)."""
    cls = torch.Tensor
    names = ("register_hook", "retain_grad", "register_post_accumulate_grad_hook")
    originals = {name: getattr(cls, name) for name in names}

    def wrap(name: str) -> Callable[..., Any]:
        original = originals[name]

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            note(name)
            return original(self, *args, **kwargs)

        method.__name__ = name
        method.__doc__ = original.__doc__
        return method

    wrappers = {name: wrap(name) for name in names}
    for name, fn in wrappers.items():
        setattr(cls, name, fn)
    try:
        yield
    finally:
        for name, fn in wrappers.items():
            if cls.__dict__.get(name) is fn:
                if name == "retain_grad":  # a C method of TensorBase: uncover it again
                    delattr(cls, name)
                    if getattr(cls, name) is not originals[name]:
                        setattr(cls, name, originals[name])
                else:
                    setattr(cls, name, originals[name])


@contextmanager
def line_tracer(tracer: LineTracer) -> Iterator[LineTracer]:
    """The cell's line tracer on for the block; the previous trace function back after."""
    tracer.start()
    try:
        yield tracer
    finally:
        tracer.stop()


@contextmanager
def builtin(name: str, value: Any) -> Iterator[None]:
    """``name`` as a builtin for the block (the cell's instrumented statements call it); removed
    after, or the earlier value put back."""
    import builtins

    missing = object()
    before = builtins.__dict__.get(name, missing)
    builtins.__dict__[name] = value
    try:
        yield
    finally:
        if builtins.__dict__.get(name) is value:
            if before is missing:
                del builtins.__dict__[name]
            else:
                builtins.__dict__[name] = before


@contextmanager
def function_mode(mode: TorchFunctionMode) -> Iterator[TorchFunctionMode]:
    """A torch-function mode for the block; afterwards only that mode is removed from the stack
    (modes the cell pushed above it and left open stay, in their order)."""
    mode.__enter__()
    try:
        yield mode
    finally:
        above: list[Any] = []
        while torch._C._len_torch_function_stack() > 0:
            top = torch._C._pop_torch_function_stack()
            if top is mode:
                break
            above.append(top)
        for m in reversed(above):
            torch._C._push_on_torch_function_stack(m)


@contextmanager
def flop_counter() -> Iterator[Any]:
    """``torch.utils.flop_counter.FlopCounterMode`` for the block; afterwards only its own modes are
    removed (dispatch modes the cell pushed above it and left open stay), and the global module
    hooks of its module tracker."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack, _pop_mode, _push_mode
    from torch.utils.flop_counter import FlopCounterMode

    before = list(_get_current_dispatch_mode_stack())
    fn_before = torch._C._len_torch_function_stack()
    counter = FlopCounterMode(display=False)
    counter.__enter__()
    ours_dispatch = [m for m in _get_current_dispatch_mode_stack() if not any(m is b for b in before)]
    ours_fn = [torch._C._get_function_stack_at(i) for i in range(fn_before, torch._C._len_torch_function_stack())]
    try:
        yield counter
    finally:
        stack = list(_get_current_dispatch_mode_stack())
        while _get_current_dispatch_mode_stack():
            _pop_mode()
        for m in stack:
            if not any(m is o for o in ours_dispatch):
                _push_mode(m)
        fn_stack = [torch._C._get_function_stack_at(i) for i in range(torch._C._len_torch_function_stack())]
        while torch._C._len_torch_function_stack() > 0:
            torch._C._pop_torch_function_stack()
        for m in fn_stack:
            if not any(m is o for o in ours_fn):
                torch._C._push_on_torch_function_stack(m)
        tracker = getattr(counter, "mod_tracker", None)  # its global module hooks (FlopCounterMode.__exit__ would remove them)
        if tracker is not None:
            tracker.__exit__()


@contextmanager
def without_user_modes() -> Iterator[None]:
    """The magic's own tensor computations: no torch-function or dispatch mode of the user (a
    profiler, a FlopCounter, a fake-tensor mode) sees them, and no saved-tensor hook of the user
    packs what they save.  Everything is put back in its order afterwards."""
    from torch.utils._python_dispatch import _disable_current_modes

    hooks: list[Any] = []
    while True:
        top = torch._C._autograd._top_saved_tensors_default_hooks(False)
        if top is None:
            break
        hooks.append(top)
        torch._C._autograd._pop_saved_tensors_default_hooks()
    try:
        with torch._C.DisableTorchFunction(), _disable_current_modes():
            yield
    finally:
        for pack, unpack in reversed(hooks):
            torch._C._autograd._push_saved_tensors_default_hooks(pack, unpack)


__all__ = ["builtin", "engine_calls", "flop_counter", "function_mode", "hook_registrations", "line_tracer", "patched", "without_user_modes"]
