"""What every magic's glue shares: parsing a magic's line, the user's names, name errors."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable
from typing import Any, cast

from IPython.core import magic_arguments as ipython_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics
from IPython.utils.process import arg_split  # type: ignore[attr-defined]  # its documented home

from tensormagic.engine.namespace import suggest

Method = Callable[..., Any]
Decorator = Callable[[Method], Method]


def magic_arguments(name: str | None = None) -> Decorator:
    """IPython's ``@magic_arguments()`` (builds the magic's parser and its ``%magic?`` help), typed;
    ``name="%autograd"`` makes a cell magic's usage line read ``%%autograd``."""
    return cast("Decorator", ipython_arguments.magic_arguments(name))


def argument(*args: Any, **kwargs: Any) -> Decorator:
    """IPython's ``@argument(...)``: one argparse argument of a magic, typed."""
    return cast("Decorator", ipython_arguments.argument(*args, **kwargs))


def parse_line(magic: Any, line: str) -> argparse.Namespace:
    """Parse a magic's line with its ``magic_arguments`` parser, keeping quotes inside expressions.

    A trailing ``;`` (which silences the output) is not part of the arguments.
    """
    line = line.strip()
    if line.endswith(";"):
        line = line[:-1].rstrip()
    key = (id(magic.parser), line)
    got = _PARSED.get(key)
    if got is None or got[0] is not magic.parser:
        try:
            tokens = arg_split(line, posix=False, strict=False)
        except ValueError as exc:
            raise UsageError(f"could not split the arguments ({exc}); check the quotes") from None
        _check_options(magic.parser, tokens)
        parsed: argparse.Namespace = magic.parser.parse_args(tokens)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        got = _PARSED[key] = (magic.parser, vars(parsed))
    # a fresh Namespace each time (the magic may change it), its lists copied
    return argparse.Namespace(**{k: list(v) if isinstance(v, list) else v for k, v in got[1].items()})


#: Lines already parsed, per parser: a loop cell run again and again pays argparse once (its
#: result depends on the line alone).
_PARSED: dict[tuple[int, str], tuple[argparse.ArgumentParser, dict[str, Any]]] = {}
_PARSED_MAX = 256


def _check_options(parser: argparse.ArgumentParser, tokens: list[str]) -> None:
    """A misspelled option (``--exat``) is named with the option meant, before argparse reads it
    as something else."""
    known = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
    for token in tokens:
        option = token.split("=", 1)[0]
        if not option.startswith("--") or option in known or option == "--":
            continue
        close = difflib.get_close_matches(option, known, n=1, cutoff=0.75)
        if close:
            raise UsageError(f"unknown option {option}: did you mean {close[0]}? (%{parser.prog}? lists every option)")


class UserNamespace(Magics):
    """A magics class that reads the user's namespace: hidden names, expressions, name errors."""

    @property
    def user_ns(self) -> dict[str, Any]:
        assert self.shell is not None
        ns: dict[str, Any] = self.shell.user_ns
        return ns

    @property
    def hidden(self) -> set[str]:
        """The names IPython itself put in the namespace (``In``, ``Out``, ``exit``...)."""
        return set(getattr(self.shell, "user_ns_hidden", {}))

    def resolve(self, expr: str) -> Any:
        """Evaluate ``expr`` in the user's namespace, turning every failure into a UsageError."""
        assert self.shell is not None
        try:
            return self.shell.ev(expr)
        except NameError as exc:
            missing = getattr(exc, "name", None) or expr
            raise UsageError(self.unknown_name(missing)) from None
        except SyntaxError as exc:
            raise UsageError(f"{expr!r} is not a valid Python expression ({exc.msg}); give a variable name or an expression such as x[0]") from None
        except Exception as exc:  # noqa: BLE001 - the user's expression failed: say so in one line
            raise UsageError(f"evaluating {expr!r} raised {type(exc).__name__}: {exc}") from None

    def unknown_name(self, name: str) -> str:
        close = suggest(name, self.user_ns, self.hidden)
        hint = f"; did you mean {', '.join(close)}?" if close else "; run %tensorinfo with no argument to list every array, tensor and module"
        return f"name {name!r} is not defined{hint}"


__all__ = ["UserNamespace", "parse_line"]
