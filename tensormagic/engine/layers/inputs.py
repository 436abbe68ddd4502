"""The inputs of the probe's forward pass: the user's value, or random tensors of given sizes.

The forward never sees the user's own tensors: each input tensor is a copy (``clone``), so an
in-place op in the model cannot change the user's data and no autograd hook can reach it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from tensormagic.engine.naming import is_tensor, short_type_name


class InputError(ValueError):
    """The input cannot be given to the model; the message is one line."""


def parse_sizes(text: str) -> list[list[int]]:
    """``8,3,32,32`` (or ``8x3x32x32``, ``(8, 3, 32, 32)``); several inputs separated by ``;``."""
    sizes: list[list[int]] = []
    for part in text.split(";"):
        part = part.strip().strip("()[]").strip()
        if not part:
            continue
        items = [s for s in re.split(r"[\s,x×*]+", part) if s]
        try:
            dims = [int(s) for s in items]
        except ValueError:
            raise InputError(f"--input-size needs whole numbers such as 8,3,32,32, not {text!r}") from None
        if not dims or any(d < 0 for d in dims):
            raise InputError(f"--input-size needs sizes of 0 or more, such as 8,3,32,32, not {text!r}")
        sizes.append(dims)
    if not sizes:
        raise InputError("--input-size needs a shape, e.g. --input-size 8,3,32,32")
    return sizes


def model_dtype_device(model: torch.nn.Module) -> tuple[torch.dtype, torch.device]:
    """The dtype and device random inputs get: those of the model's first floating parameter
    or buffer (float32 on the CPU for a model without any)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype, t.device
    for t in list(model.parameters()) + list(model.buffers()):
        return torch.get_default_dtype(), t.device
    return torch.get_default_dtype(), torch.device("cpu")


def random_inputs(model: torch.nn.Module, sizes: list[list[int]]) -> tuple[Any, ...]:
    """Standard normal tensors of ``sizes`` from a private fixed-seed generator (the user's
    RNG state is untouched), with the model's dtype and device."""
    dtype, device = model_dtype_device(model)
    gen = torch.Generator(device="cpu").manual_seed(0)
    out = []
    for shape in sizes:
        if device.type == "meta":  # no data to draw
            out.append(torch.empty(shape, dtype=dtype, device=device))
        else:
            out.append(torch.randn(shape, generator=gen).to(device=device, dtype=dtype))
    return tuple(out)


def split_input(value: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A tensor -> ``model(t)``; a tuple or list -> ``model(*items)``; a dict -> ``model(**d)``."""
    if is_tensor(value):
        return (value,), {}
    if isinstance(value, (tuple, list)):
        return tuple(value), {}
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise InputError(f"a dict input becomes keyword arguments: its keys must be strings, not {bad[0]!r}")
        return (), dict(value)
    raise InputError(f"--input needs a tensor, a tuple or list of arguments, or a dict of keyword arguments, not a {short_type_name(value)}")


def private_copies(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any], list[torch.Tensor]]:
    """Copies of the top-level tensor arguments (same dtype, device and ``requires_grad``, no
    link to the user's graph), and the list of copies made."""
    made: list[torch.Tensor] = []

    def copy(v: Any) -> Any:
        if not is_tensor(v):
            return v
        with torch.no_grad():
            c = v.detach().clone()
        if v.requires_grad and (c.is_floating_point() or c.is_complex()):
            c.requires_grad_(True)
        made.append(c)
        return c

    return tuple(copy(a) for a in args), {k: copy(v) for k, v in kwargs.items()}, made


def shape_of(value: Any) -> list[list[int] | None]:
    """The shapes of every tensor in a (nested) value, in order; None for an exotic tensor."""
    from torch.utils._pytree import tree_flatten

    shapes: list[list[int] | None] = []
    for leaf in tree_flatten(value)[0]:
        if is_tensor(leaf):
            try:
                shapes.append([int(s) for s in leaf.shape])
            except Exception:  # noqa: BLE001 - nested tensors have no single shape
                shapes.append(None)
    return shapes


def describe_shapes(shapes: list[list[int] | None]) -> str:
    """``(8, 3, 32, 32)`` or ``(2, 5, 16), (2, 5, 16)``; ``no tensors`` when empty."""
    if not shapes:
        return "no tensors"
    return ", ".join("?" if s is None else "(" + ", ".join(map(str, s)) + ("," if len(s) == 1 else "") + ")" for s in shapes[:6]) + (" ..." if len(shapes) > 6 else "")


__all__ = ["InputError", "describe_shapes", "model_dtype_device", "parse_sizes", "private_copies", "random_inputs", "shape_of", "split_input"]
