"""``%%autograd`` gives its cell to the code exactly as IPython would (``magics/autograd.transform_cell``):
the same text as ``shell.transform_cell`` for every cell, whether or not it skips the tokeniser."""

from __future__ import annotations

import pytest

from tensormagic.magics.autograd import transform_cell
from tests.conftest import run, shown_as_one_line_usage_error

CELLS = [
    "y = w * x + b\ny.backward()\n",
    "y = w * x + b\ny.backward()",
    "x = 1",
    "a = 1\n\n\nb = 2\n",
    "def f(x):\n    return x\nf(1)\n",
    "x = '%d' % 3\ny = 2\n",
    "a = !ls\nb = 1\n",
    "%time x = 1\ny = 2\n",
    "%%time\nx = 1\n",
    ">>> x = 1\n>>> y = 2\n",
    "In [1]: x = 1\n   ...: y = 2\n",
    "  x = 1\n  y = 2\n",
    "\n\nx = 1\ny = 2\n",
    "x = (1\n     / 2)\ny = 3\n",
    "f?\nx = 1\n",
    "x = 1\nf??\n",
    "if True:\n    pass\nelse:\n    x = 1\n",
    "x = 1  # a comment with a ? in it\ny = 2\n",
    "s = '''a\n>>> b'''\nt = 1\n",
    "x = 1\r\ny = 2\r\n",
    "\tx = 1\ny = 2\n",
    "x = 1\n;f a\n",
    "x = 1\n,f a b\n",
    "x = 1\n/f a\n",
    "for i in range(3):\n    loss = w * i\n    loss.backward()\n",
    "a = 1\nb = 2\n   \n",  # IPython empties a last line of whitespace only
    "a = 1\n\t\nb = 2\n",
]


@pytest.mark.parametrize("cell", CELLS)
def test_the_cell_is_what_ipython_makes_of_it(shell, cell):
    assert transform_cell(shell, cell) == shell.transform_cell(cell)


def test_a_transformer_an_extension_added_still_runs(shell):
    def shout(lines: list[str]) -> list[str]:
        return [line.replace("quiet", "LOUD") for line in lines]

    shell.input_transformers_post.append(shout)
    try:
        assert transform_cell(shell, "a = 'quiet'\nb = 1\n") == "a = 'LOUD'\nb = 1\n"
        shell.input_transformers_cleanup.append(shout)
        assert transform_cell(shell, "c = 'quiet'\nd = 2\n") == "c = 'LOUD'\nd = 2\n"
    finally:
        shell.input_transformers_post.remove(shout)
        if shout in shell.input_transformers_cleanup:
            shell.input_transformers_cleanup.remove(shout)


def test_a_magic_line_in_an_autograd_cell_still_works(shell):
    run(shell, "import torch\nw = torch.tensor(2., requires_grad=True)")
    r = run(shell, "%%autograd\n%time y = w * 3\ny.backward()\n")
    assert r.row("w").grad == 3.0


def test_a_cell_ipythons_tokeniser_rejects_is_a_one_line_error(shell, capsys):
    err = shown_as_one_line_usage_error(shell, capsys, "%%autograd\nif a:\n    x = (1,\n  2)\n y = 3\n")
    assert "syntax error" in str(err)
