"""What one ``%%autograd`` run is asked for, and the checks on it."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass, field

#: Jacobians are computed up to this many entries (outputs x inputs) unless told otherwise.
DEFAULT_JACOBIAN_BUDGET = 1_000_000
#: Seconds the magic's own computations (its backward pass, Jacobians, the NaN search) may take
#: by default; above that it says what they would cost instead of making them.
DEFAULT_EXTRA_SECONDS = 1.0


class AutogradUsageError(ValueError):
    """A mistake in the options (the glue turns it into a UsageError)."""


@dataclass(kw_only=True)
class AutogradOptions:
    """The options of one run (the magic's help says what each does)."""

    of: list[str] = field(default_factory=list)
    wrt: list[str] = field(default_factory=list)
    check: bool = False
    flops: bool = False
    jacobian: bool = True
    jacobian_budget: int = DEFAULT_JACOBIAN_BUDGET
    extra_seconds: float = DEFAULT_EXTRA_SECONDS
    lines: bool = True
    locate_nan: bool = False


def split_names(text: str) -> list[str]:
    """``"a, b[0, 1], c"`` -> ``["a", "b[0, 1]", "c"]`` (commas inside brackets stay)."""
    out: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(current.strip())
            current = ""
        else:
            current += ch
    out.append(current.strip())
    return [o for o in out if o]


def check_expressions(exprs: Sequence[str], option: str) -> None:
    """Raise AutogradUsageError unless every expression parses."""
    for expr in exprs:
        try:
            ast.parse(expr, mode="eval")
        except SyntaxError:
            raise AutogradUsageError(f"{option} {expr!r} is not a variable name or expression") from None


__all__ = ["DEFAULT_EXTRA_SECONDS", "DEFAULT_JACOBIAN_BUDGET", "AutogradOptions", "AutogradUsageError", "check_expressions", "split_names"]
