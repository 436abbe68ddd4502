"""``%%autograd``: parse the line, compile the cell, run it under the engine's observer, return
the report."""

from __future__ import annotations

import functools
import keyword
import re
import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import cell_magic, magics_class, output_can_be_silenced

from tensormagic.engine import autograd as autograd_engine
from tensormagic.magics.common import UserNamespace, argument, magic_arguments, parse_line


def explain_failure(session: Any) -> None:
    """Show the report of a cell that raised (which tensor had no graph, what was detached...)
    when it saw a gradient computation; nothing when the report itself cannot be made."""
    try:
        if not session.recorder.calls:
            return
        report = session.report()
    except Exception:  # noqa: BLE001 - the cell's own exception is what matters
        return
    from IPython.display import display

    display(report)


def cell_number(shell: Any) -> int:
    """The number IPython gave the cell running this magic (``In[N]``), so that a traceback of
    the cell's code says ``Cell In[N]`` as in a plain cell."""
    numbers = getattr(shell.compile, "_filename_map", {})
    frame = sys._getframe(1)
    while frame is not None:
        number = numbers.get(frame.f_code.co_filename)
        if isinstance(number, int):
            return number
        frame = frame.f_back  # type: ignore[assignment]
    return int(shell.execution_count)


#: What may make IPython's input transformers change a cell: magics, shell escapes, help, prompts
#: (``>>>``, ``...``, ``In [1]:``), the autocall escapes at the start of a line, and a line of
#: whitespace only (IPython empties the last one).
_SPECIAL = re.compile(r"[%!?]|^[ \t]*([,;/]|>>>|\.\.\.|In \[|\[(nav|ins)\])|^[ \t\f\v]+$", re.MULTILINE)


def _plain_transforms(shell: Any) -> bool:
    """The shell transforms cells with IPython's own input transformers only (no extension added one)."""
    from IPython.core.inputtransformer2 import TransformerManager
    from IPython.core.interactiveshell import InteractiveShell

    manager = shell.input_transformer_manager
    if type(manager) is not TransformerManager or getattr(shell, "input_transformers_post", None):
        return False
    if getattr(type(shell), "transform_cell", None) is not InteractiveShell.transform_cell or "transform_cell" in vars(shell):
        return False  # a shell that transforms cells its own way
    return _transforms_of(manager) == _default_transforms()


@functools.cache
def _default_transforms() -> tuple[list[Any], list[Any]]:
    from IPython.core.inputtransformer2 import TransformerManager

    return _transforms_of(TransformerManager())


def _transforms_of(manager: Any) -> tuple[list[Any], list[Any]]:
    """What tells a manager's transformers apart: each cleanup and line transform's type, code and
    prompt pattern, and the token transformers."""
    kinds = [(type(f), getattr(f, "__code__", None), getattr(getattr(f, "prompt_re", None), "pattern", None)) for f in manager.cleanup_transforms + manager.line_transforms]
    return kinds, list(manager.token_transformers)


def transform_cell(shell: Any, cell: str) -> str:
    """``shell.transform_cell(cell)``: what IPython makes of the cell's code before parsing it.  A
    cell of several lines with nothing IPython's own transformers would change (no ``%``, ``!``,
    ``?``, prompt or autocall escape, not indented, no extension's transformer) is the same text
    ending in a newline, given without tokenising it (a quarter of a millisecond per cell)."""
    if "\n" in cell.rstrip("\n") and cell[:1] not in (" ", "\t", "\n", "\r", "\f") and not _SPECIAL.search(cell) and _plain_transforms(shell):
        return cell if cell.endswith("\n") else cell + "\n"
    return str(shell.transform_cell(cell))


def compile_cell(tree: Any, filename: str, compile_fn: Any = compile) -> tuple[Any, Any]:
    """Compile a parsed cell as IPython does: the body, and its last expression apart (or None)."""
    import ast

    body = list(tree.body)
    last = body.pop() if body and isinstance(body[-1], ast.Expr) else None
    code = compile_fn(ast.Module(body=body, type_ignores=[]), filename, "exec") if body else None
    expr = None
    if last is not None:
        expression = ast.Expression(body=last.value)
        ast.copy_location(expression, last)
        expr = compile_fn(expression, filename, "eval")
    return code, expr


def run_code(compiled: tuple[Any, Any], globals_: dict[str, Any], locals_: dict[str, Any]) -> Any:
    """Execute a compiled cell and return the value of its last expression (or None); this
    frame is hidden from IPython's tracebacks, so an error shows the user's code as usual."""
    __tracebackhide__ = True
    code, expr = compiled
    if code is not None:
        exec(code, globals_, locals_)
    if expr is None:
        return None
    return eval(expr, globals_, locals_)


@magics_class
class AutogradMagics(UserNamespace):
    """``%%autograd``."""

    @output_can_be_silenced
    @magic_arguments("%autograd")  # a cell magic: its usage line reads %%autograd
    @argument("--of", action="append", default=[], metavar="NAMES", help="the outputs to differentiate (comma-separated names or expressions); default: what the cell called backward on, else its last expression, else the graph roots it assigned")
    @argument("--wrt", action="append", default=[], metavar="NAMES", help="only these inputs (comma-separated names or expressions); default: every tensor the computation involves")
    @argument("--check", action="store_true", help="also run torch.autograd.gradcheck in float64 on copies of small inputs")
    @argument("--flops", action="store_true", help="count the FLOPs of the forward and backward passes (torch.utils.flop_counter)")
    @argument("--jacobian-budget", type=int, default=autograd_engine.DEFAULT_JACOBIAN_BUDGET, metavar="N", help=f"compute the full Jacobian of a non-scalar output up to N entries (default {autograd_engine.DEFAULT_JACOBIAN_BUDGET:,})")
    @argument("--no-jacobian", action="store_true", help="never compute Jacobians: non-scalar outputs get the vector-Jacobian product with ones")
    @argument("--extra-time", type=float, default=autograd_engine.DEFAULT_EXTRA_SECONDS, metavar="SECONDS", help=f"time the magic's own computations (its backward pass when the cell has none, Jacobians, the NaN search) may take; above it they are skipped and their estimated cost is shown (default {autograd_engine.DEFAULT_EXTRA_SECONDS:g})")
    @argument("--no-lines", action="store_true", help="do not record the cell line of each op (a little faster; lines then come from assignments only)")
    @argument("--nan", action="store_true", help="hook every node of the cell's backward to find the op whose gradient first turns NaN/inf")
    @argument("--out", metavar="NAME", help="also store the report in the variable NAME")
    @cell_magic
    def autograd(self, line: str = "", cell: str = "") -> Any:
        """Run the cell as usual, then explain every derivative it computed (or could compute).

        Usage::

            %%autograd                    # the outputs, one row per tensor involved, graph, cost, health
            w = torch.tensor(4., requires_grad=True)
            y = w * 3
            y.backward()

            %%autograd --of loss --wrt w,b --flops --check --out r
            %%autograd --nan              # also find the op whose gradient first turns NaN/inf
            %%autograd --jacobian-budget 100 --extra-time 5
            %%autograd --no-jacobian --no-lines

        For each output (what the cell called backward / torch.autograd.grad on, else its last
        expression, else the graph roots it assigned; or --of) each tensor involved gets a row
        with its gradient, or a status (ok, no_requires_grad, non_leaf, detached, unused,
        integer_dtype, non_finite, not_computed), the reason and the fix.  The cell's own .grad
        results end exactly as without the magic; if it calls no backward, no .grad is touched.

        The magic's own computations (its backward pass for a cell that calls none, full
        Jacobians of non-scalar outputs up to --jacobian-budget entries, the NaN search) run only
        where they run no user code, within --extra-time seconds; what they leave out is said,
        with the option that asks for it.  --no-jacobian gives non-scalar outputs the
        vector-Jacobian product with ones instead; --no-lines skips recording each op's cell line.
        """
        __tracebackhide__ = True
        args = parse_line(self.autograd, line)
        if not cell.strip():
            raise UsageError("%%autograd needs code below it, e.g. %%autograd on the first line and then y = w * x; y.backward()")
        if args.jacobian_budget <= 0:
            raise UsageError(f"--jacobian-budget must be a positive number of entries, not {args.jacobian_budget}")
        if not args.extra_time >= 0:
            raise UsageError(f"--extra-time must be a number of seconds, 0 or more, not {args.extra_time}")
        if args.out is not None and (not args.out.isidentifier() or keyword.iskeyword(args.out)):
            raise UsageError(f"--out needs a variable name, not {args.out!r}")
        options = autograd_engine.AutogradOptions(
            of=[n for text in args.of for n in autograd_engine.split_names(text)],
            wrt=[n for text in args.wrt for n in autograd_engine.split_names(text)],
            check=args.check,
            flops=args.flops,
            jacobian=not args.no_jacobian,
            jacobian_budget=args.jacobian_budget,
            extra_seconds=args.extra_time,
            lines=not args.no_lines,
            locate_nan=args.nan,
        )
        try:
            autograd_engine.check_expressions(options.of, "--of")
            autograd_engine.check_expressions(options.wrt, "--wrt")
        except autograd_engine.AutogradUsageError as exc:
            raise UsageError(str(exc)) from None
        shell = self.shell
        assert shell is not None
        number = cell_number(shell)
        try:
            transformed = transform_cell(shell, cell)  # (IPython's tokeniser raises IndentationError on some cells)
            try:
                filename = shell.compile.cache(transformed, number, raw_code=cell)
            except TypeError:  # an older IPython without raw_code
                filename = shell.compile.cache(transformed, number)
            tree = shell.transform_ast(shell.compile.ast_parse(transformed, filename=filename))
            session = autograd_engine.AutogradSession(shell.user_ns, transformed, filename, options, self.hidden, tree=tree)
            compiled = compile_cell(session.prepare(tree), filename, shell.compile)
        except SyntaxError as exc:
            where = f"line {exc.lineno}: " if exc.lineno else ""
            text = f" ({exc.text.strip()})" if exc.text and exc.text.strip() else ""
            raise UsageError(f"the cell has a syntax error, so it did not run: {where}{exc.msg}{text}") from None
        try:
            with session.observe():
                value = run_code(compiled, shell.user_global_ns, shell.user_ns)
        except Exception:
            explain_failure(session)  # the report of what ran, shown before the traceback
            raise  # the cell's own exception, unchanged
        if value is not None:
            sys.displayhook(value)  # the cell's own output, as in a normal cell
        try:
            report = session.report(value)
        except autograd_engine.AutogradUsageError as exc:
            raise UsageError(f"{exc} (the cell itself ran)") from None
        if args.out:
            shell.user_ns[args.out] = report
        return report


__all__ = ["AutogradMagics", "compile_cell", "run_code", "transform_cell"]
