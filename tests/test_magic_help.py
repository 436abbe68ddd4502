"""``%tensorinfo?``, ``%%autograd?`` and ``%todevice?``: the help a user reads names every option.

IPython's ``magic_arguments`` builds each magic's help from its parser: a usage line, the
magic's own docstring (the parser's description) and the option list.  The usage line and the
option list name every option whatever the docstring says, so these tests read the docstring
part: it must mention every ``--option`` the parser defines (in an example or a sentence), and
no ``--option`` the parser does not have.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

#: (kind, name, how the help is asked for)
MAGICS = [("line", "tensorinfo", "%tensorinfo"), ("cell", "autograd", "%%autograd"), ("line", "todevice", "%todevice")]
OPTION = re.compile(r"(?<![\w-])--[a-z][\w-]*[a-z]")


def parser_of(shell: InteractiveShell, kind: str, name: str) -> Any:
    magic = shell.find_cell_magic(name) if kind == "cell" else shell.find_line_magic(name)
    assert magic is not None, name
    return magic.parser


def options_of(parser: Any) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings if opt.startswith("--") and opt != "--help"}


@pytest.mark.parametrize(("kind", "name", "asked"), MAGICS, ids=[m[2] for m in MAGICS])
def test_docstring_names_every_option_and_no_other(shell: InteractiveShell, kind: str, name: str, asked: str) -> None:
    parser = parser_of(shell, kind, name)
    options = options_of(parser)
    assert options, name  # the parser was found and has options
    doc = parser.description
    mentioned = set(OPTION.findall(doc))
    assert not options - mentioned, f"{asked}'s docstring does not mention {sorted(options - mentioned)}"
    assert not mentioned - options, f"{asked}'s docstring mentions options it does not have: {sorted(mentioned - options)}"


@pytest.mark.parametrize(("kind", "name", "asked"), MAGICS, ids=[m[2] for m in MAGICS])
def test_question_mark_shows_the_docstring_and_every_option(shell: InteractiveShell, kind: str, name: str, asked: str) -> None:
    parser = parser_of(shell, kind, name)
    text = shell.object_inspect_text(asked)
    first = parser.description.strip().splitlines()[0]
    assert first in text, (asked, text[:500])
    for option in options_of(parser):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), (asked, option)
