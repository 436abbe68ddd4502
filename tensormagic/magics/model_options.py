"""Glue for ``%tensorinfo model --input EXPR`` / ``--input-size 8,3,32,32``.

The options may follow the model's expression (``%tensorinfo model --input x``), where the
magic's parser keeps everything as the expression: :func:`split_model_options` takes them out.
:func:`layers_report` evaluates the input, runs the engine and turns its errors into one-line
``UsageError``\\ s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError

from tensormagic.engine import layers as layers_engine
from tensormagic.engine.naming import is_module, short_type_name

OPTIONS = ("--input", "--input-size")


def split_model_options(tokens: list[str]) -> tuple[list[str], str | None, str | None]:
    """``(expression tokens, --input EXPR, --input-size SHAPE)`` from the tokens after the
    expression; an option's value runs to the next ``--`` option or the end."""
    rest: list[str] = []
    values: dict[str, list[str]] = {}
    current: list[str] | None = None
    for tok in tokens:
        key, eq, inline = tok.partition("=")
        if key in OPTIONS:
            if key in values:
                raise UsageError(f"{key} is given twice; give it once")
            current = values[key] = [inline] if eq else []
            continue
        if current is not None and tok.startswith("--") and len(tok) > 2 and tok[2].isalpha():
            current = None  # another option: the magic's own parser reports it
        (current if current is not None else rest).append(tok)
    found = {k: " ".join(v).strip() for k, v in values.items()}
    for key, text in found.items():
        if not text:
            example = "x" if key == "--input" else "8,3,32,32"
            raise UsageError(f"{key} needs a value, e.g. %tensorinfo model {key} {example}")
    return rest, found.get("--input"), found.get("--input-size")


def check_model(expr: str, model: Any, input_expr: str | None, input_size: str | None) -> None:
    """One of ``--input`` / ``--input-size``, and a module to run: else a UsageError."""
    if input_expr and input_size:
        raise UsageError("--input and --input-size conflict: give the input itself (--input x) or only its shape (--input-size 8,3,32,32)")
    if not is_module(model):
        option = "--input" if input_expr else "--input-size"
        raise UsageError(f"{option} runs a forward pass of a model: {expr} is a {short_type_name(model)}, not a torch.nn.Module")


def layers_report(
    expr: str,
    model: Any,
    input_expr: str | None,
    input_size: str | None,
    budget: int,
    resolve: Callable[[str], Any],
    base: Any = None,
) -> Any:
    """The layers report of ``model`` for ``--input`` / ``--input-size`` (one of them)."""
    check_model(expr, model, input_expr, input_size)
    value = resolve(input_expr) if input_expr else None
    try:
        args, kwargs = layers_engine.model_inputs(model, value, input_size)
        return layers_engine.inspect_layers(expr, model, args, kwargs, budget, base=base)
    except layers_engine.LayersError as exc:
        raise UsageError(str(exc)) from None


__all__ = ["OPTIONS", "check_model", "layers_report", "split_model_options"]
