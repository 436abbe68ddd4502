"""The IPython glue: parse a magic's arguments, resolve names, call the engine, return the report.

Every user mistake becomes a one-line ``UsageError`` and leaves the namespace untouched.
"""

from __future__ import annotations

import argparse
import keyword
import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, output_can_be_silenced
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.utils.process import arg_split
from traitlets import Bool, CaselessStrEnum, observe

from tensormagic.engine import autograd as autograd_engine
from tensormagic.engine.autograd import keeper
from tensormagic.engine import tensorinfo as tensorinfo_engine
from tensormagic.engine.namespace import describe_non_array, is_inspectable, suggest
from tensormagic.engine.tensorinfo import DEFAULT_BUDGET
from tensormagic.engine.todevice import moves as move_engine
from tensormagic.engine.todevice import placement_report
from tensormagic.engine.layers import DEFAULT_LAYER_BUDGET
from tensormagic.model_options import check_model, layers_report, split_model_options
from tensormagic.render.display import DISPLAY_MODES, display_mode, set_display_mode
from tensormagic.auto_display import AutoDisplay, environment_setting

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
        exec(code, globals_, locals_)  # noqa: S102 - the user's own cell
    if expr is None:
        return None
    return eval(expr, globals_, locals_)  # noqa: S307


def parse_line(magic: Any, line: str) -> argparse.Namespace:
    """Parse a magic's line with its ``magic_arguments`` parser, keeping quotes inside expressions.

    A trailing ``;`` (which silences the output) is not part of the arguments.
    """
    line = line.strip()
    if line.endswith(";"):
        line = line[:-1].rstrip()
    try:
        tokens = arg_split(line, posix=False, strict=False)
    except ValueError as exc:
        raise UsageError(f"could not split the arguments ({exc}); check the quotes") from None
    return magic.parser.parse_args(tokens)


@magics_class
class TensorMagics(Magics):
    """``%tensorinfo``, ``%%autograd`` and ``%todevice``."""

    display = CaselessStrEnum(
        DISPLAY_MODES,
        default_value="auto",
        help="How reports display: 'auto' (a widget panel in a live kernel, else HTML and text), "
        "'widget', 'html' (HTML and text, no widget) or 'text' (plain text only).",
    ).tag(config=True)

    auto_display = Bool(
        False,
        help="Show every tensor, array and module a cell displays (its last expression, display(x)) as a "
        "one-line summary, with a picture that opens the %tensorinfo panel in HTML and widgets; repr, "
        "str and print stay as they are.  TENSORMAGIC_AUTO_DISPLAY=1 at %load_ext turns it on too.",
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        set_display_mode(self.display)
        self._auto = AutoDisplay(self.shell, display_mode, lambda: self._hidden) if self.shell is not None else None
        if self._auto is not None and self.auto_display:
            self._auto.enable()

    @observe("display")
    def _display_changed(self, change: dict[str, Any]) -> None:
        set_display_mode(change["new"])

    @observe("auto_display")
    def _auto_display_changed(self, change: dict[str, Any]) -> None:
        auto = getattr(self, "_auto", None)
        if auto is not None:
            auto.set(bool(change["new"]))

    # -- name resolution ----------------------------------------------------------------------

    @property
    def _hidden(self) -> set[str]:
        return set(getattr(self.shell, "user_ns_hidden", {}))

    def resolve(self, expr: str) -> Any:
        """Evaluate ``expr`` in the user's namespace, turning every failure into a UsageError."""
        try:
            return self.shell.ev(expr)
        except NameError as exc:
            missing = getattr(exc, "name", None) or expr
            raise UsageError(self._unknown_name(missing)) from None
        except SyntaxError as exc:
            raise UsageError(f"{expr!r} is not a valid Python expression ({exc.msg}); give a variable name or an expression such as x[0]") from None
        except Exception as exc:  # noqa: BLE001 - the user's expression failed: say so in one line
            raise UsageError(f"evaluating {expr!r} raised {type(exc).__name__}: {exc}") from None

    def _unknown_name(self, name: str) -> str:
        close = suggest(name, self.shell.user_ns, self._hidden)
        hint = f"; did you mean {', '.join(close)}?" if close else "; run %tensorinfo with no argument to list every array, tensor and module"
        return f"name {name!r} is not defined{hint}"

    # -- %tensorinfo --------------------------------------------------------------------------

    @output_can_be_silenced
    @magic_arguments()
    @argument(
        "--budget",
        type=int,
        default=None,
        metavar="N",
        help=f"compute statistics exactly up to N elements, from a sample above (default {DEFAULT_BUDGET:,})",
    )
    @argument("--exact", action="store_true", help="always compute exact statistics, however large the tensor")
    @argument("--input", metavar="EXPR", help="a model only: run one forward pass on EXPR (a tensor, a tuple of arguments or a dict of keyword arguments) and show every layer: shapes, parameters, MACs, memory, activations (may follow the model: %%tensorinfo model --input x)")
    @argument("--input-size", metavar="SHAPE", help="a model only: the same with a random input of this shape, e.g. 8,3,32,32 (several inputs: 2,16;2,16)")
    @argument(
        "expr",
        nargs=argparse.REMAINDER,
        help="a variable or expression (x, x[0], model.fc.weight); none: every array, tensor and module",
    )
    @line_magic
    def tensorinfo(self, line: str = "") -> Any:
        """Inspect an array, tensor or module: dtype and its NumPy<->Torch twin, shape, strides,
        real storage, device, autograd state, value statistics and which variables share its memory.

        Usage::

            %tensorinfo x                 # a NumPy array, torch tensor or nn.Module
            %tensorinfo model.fc.weight   # any expression
            %tensorinfo                   # every array, tensor and module, grouped by shared memory
            r = %tensorinfo x             # the report: r.to_dict() for code
            %tensorinfo model --input x   # a model layer by layer: one row per module call
            %tensorinfo model --input-size 8,3,32,32

        Statistics are computed where the data lives, exactly up to --budget elements and from a
        fixed-seed sample above it (labelled as such).
        """
        try:
            args = parse_line(self.tensorinfo, line)
        except UsageError as exc:
            if "unrecognized arguments: -" in str(exc):
                raise UsageError(f"{exc}; to inspect an expression that starts with '-', wrap it in parentheses: %tensorinfo (-x)") from None
            raise
        args.expr, late_input, late_size = split_model_options(args.expr)
        input_expr, input_size = args.input or late_input, args.input_size or late_size
        late = [tok for tok in args.expr if tok in ("--budget", "--exact") or tok.startswith("--budget=")]
        if late:
            raise UsageError(f"{late[0]} must come before the expression, e.g. %tensorinfo {late[0].split('=')[0]}{' N' if late[0].startswith('--budget') else ''} x")
        if args.budget is not None and args.budget <= 0:
            raise UsageError(f"--budget must be a positive number of elements, not {args.budget}")
        if args.exact and args.budget is not None:
            raise UsageError("--exact and --budget conflict: --exact computes every statistic exactly, --budget N only up to N elements; give one")
        budget = 2**62 if args.exact else (args.budget if args.budget is not None else DEFAULT_BUDGET)
        expr = " ".join(args.expr).strip()
        if not expr:
            if input_expr or input_size:
                raise UsageError(f"{'--input' if input_expr else '--input-size'} needs the model to run, e.g. %tensorinfo model {'--input x' if input_expr else '--input-size 8,3,32,32'}")
            if args.exact or args.budget is not None:
                raise UsageError(f"{'--exact' if args.exact else '--budget'} applies to one array or tensor; give an expression, e.g. %tensorinfo {'--exact' if args.exact else '--budget N'} x")
            return tensorinfo_engine.inspect_namespace(self.shell.user_ns, self._hidden)
        obj = self.resolve(expr)
        if not is_inspectable(obj):
            raise UsageError(f"{expr} {describe_non_array(obj)}")
        if input_expr or input_size:
            check_model(expr, obj, input_expr, input_size)
        try:
            report = tensorinfo_engine.inspect_object(expr, obj, self.shell.user_ns, budget, self._hidden)
        except tensorinfo_engine.UninspectableError as exc:
            raise UsageError(str(exc)) from None
        if input_expr or input_size:
            layer_budget = budget if args.exact or args.budget is not None else DEFAULT_LAYER_BUDGET
            return layers_report(expr, obj, input_expr, input_size, layer_budget, self.resolve, base=report)
        return report

    # -- %%autograd ---------------------------------------------------------------------------

    @output_can_be_silenced
    @magic_arguments()
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

        For each output (what the cell called backward / torch.autograd.grad on, else its last
        expression, else the graph roots it assigned; or --of) each tensor involved gets a row
        with its gradient, or a status (ok, no_requires_grad, non_leaf, detached, unused,
        integer_dtype, non_finite), the reason and the fix.  The cell's own .grad results end
        exactly as without the magic; if it calls no backward, no .grad is touched.
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
        transformed = shell.transform_cell(cell)
        try:
            filename = shell.compile.cache(transformed, shell.execution_count, raw_code=cell)
        except TypeError:  # an older IPython without raw_code
            filename = shell.compile.cache(transformed, shell.execution_count)
        try:
            tree = shell.transform_ast(shell.compile.ast_parse(transformed, filename=filename))
            session = autograd_engine.AutogradSession(shell.user_ns, transformed, filename, options, self._hidden, tree=tree)
            compiled = compile_cell(session.prepare(tree), filename, shell.compile)
        except SyntaxError as exc:
            where = f"line {exc.lineno}: " if exc.lineno else ""
            text = f" ({exc.text.strip()})" if exc.text and exc.text.strip() else ""
            raise UsageError(f"the cell has a syntax error, so it did not run: {where}{exc.msg}{text}") from None
        with session.observe():
            value = run_code(compiled, shell.user_global_ns, shell.user_ns)
        if value is not None:
            sys.displayhook(value)  # the cell's own output, as in a normal cell
        try:
            report = session.report(value)
        except autograd_engine.AutogradUsageError as exc:
            raise UsageError(f"{exc} (the cell itself ran)") from None
        if args.out:
            shell.user_ns[args.out] = report
        return report

    # -- %todevice ----------------------------------------------------------------------------

    @output_can_be_silenced
    @magic_arguments()
    @argument("--dtype", metavar="DTYPE", help="convert on the way, e.g. float32, float16, bfloat16 (inside modules, optimizers and containers only floating-point tensors)")
    @argument("--non-blocking", action="store_true", help="queue the copies asynchronously (truly so only from pinned memory: add --pin-memory); the move still waits for them before rebinding")
    @argument("--pin-memory", action="store_true", help="copy CPU data through page-locked (pinned) memory; needs a CUDA or XPU device")
    @argument("--all", action="store_true", help="move every tensor, module, optimizer and container of tensors (NumPy arrays stay as they are)")
    @argument("targets", nargs="*", metavar="NAMES DEVICE", help="variable names (spaces or commas), then the device: cpu, cuda, cuda:N, mps, xpu, meta or auto")
    @line_magic
    def todevice(self, line: str = "") -> Any:
        """Show where every tensor, array, module and optimizer lives, or move named ones to a device.

        Usage::

            %todevice                      # placement: every object's device, dtype and bytes; the devices
            %todevice x model opt cuda     # move x, model (in place) and opt's state; rebind x
            %todevice batch auto           # dicts, lists and tuples move element-wise; auto = best device
            %todevice a cpu                # a NumPy array becomes a tensor (sharing its memory on the cpu)
            %todevice --dtype float32 a cuda
            %todevice --pin-memory --non-blocking x cuda
            %todevice --all meta           # every tensor, module, optimizer and container of tensors
            r = %todevice x cuda           # the report: r.to_dict() for code

        DEVICE is cpu, cuda, cuda:N, mps, xpu, meta or auto (the current GPU, else cpu).  Moves are
        all or nothing: if any object cannot move, no name is rebound and no module changes.
        """
        try:
            args = parse_line(self.todevice, line)
        except UsageError as exc:
            if "unrecognized arguments" not in str(exc):
                raise
            raise UsageError(f"{exc}: options go before the names, as in %todevice --dtype float32 --pin-memory x cuda") from None
        tokens = [t for token in args.targets for t in token.split(",") if t]
        options = {"dtype": args.dtype, "non_blocking": args.non_blocking, "pin_memory": args.pin_memory}
        if args.all:
            if len(tokens) != 1:
                raise UsageError("--all takes only a device, e.g. %todevice --all cuda" if tokens else "--all needs a device, e.g. %todevice --all cuda")
            return self._todevice_move(None, tokens[0], options)
        if not tokens:
            if args.dtype or args.non_blocking or args.pin_memory:
                raise UsageError("name what to move and where, e.g. %todevice --dtype float32 x cuda")
            report = placement_report(self.shell.user_ns, self._hidden)
            report.on_move = lambda device: self._todevice_move(None, device, options)
            return report
        if len(tokens) == 1:
            devices = ", ".join(move_engine.device_names()) + ", auto"
            if tokens[0].split(":")[0].lower() in ("cpu", "cuda", "mps", "xpu", "meta", "auto"):
                raise UsageError(f"name what to move to {tokens[0]}, e.g. %todevice x model {tokens[0]}, or move everything with %todevice --all {tokens[0]}")
            raise UsageError(f"give the names and then a device, e.g. %todevice {tokens[0]} cuda (devices: {devices})")
        return self._todevice_move(tokens[:-1], tokens[-1], options)

    def _todevice_move(self, names: list[str] | None, device: str, options: dict[str, Any]) -> Any:
        """Move ``names`` (None: what --all moves) to ``device``, rebind them, return the report."""
        ns = self.shell.user_ns
        left: list[str] = []
        skipped: list[str] = []
        everything = names is None
        if names is None:
            names, left = move_engine.movable_names(ns, self._hidden, skipped)
            if not names:
                raise UsageError("nothing to move: no tensors, modules or optimizers in the namespace")
        try:
            outcome = move_engine.move(ns, names, device, hidden=self._hidden, **options)
        except move_engine.MoveError as exc:
            raise UsageError(str(exc)) from None
        ns.update(outcome.bindings)
        report = outcome.report
        if left:
            report.notes.insert(0, f"NumPy arrays left as they are: {', '.join(left)} (name them to make tensors of them)")
        report.notes[:0] = [f"left as it is: {why}" for why in skipped]
        chosen = None if everything else report.names
        report.on_move = lambda target: self._todevice_move(chosen, target, options)
        return report


def release_freed_graphs(result: Any = None) -> None:
    """After every cell: let go of the deep graphs %%autograd walked that the user has freed
    (see tensormagic.engine.autograd.keeper)."""
    keeper.sweep()


def load(shell: Any) -> None:
    """Register :class:`TensorMagics` once with ``shell``."""
    if "TensorMagics" in shell.magics_manager.registry:
        return
    magics = TensorMagics(shell)
    shell.register_magics(magics)
    shell.events.register("post_run_cell", release_freed_graphs)
    setting = environment_setting()
    if setting is not None:
        magics.auto_display = setting


def unload(shell: Any) -> None:
    """Remove the magics, their configurable and the display mode they set."""
    magics = shell.magics_manager.registry.pop("TensorMagics", None)
    if magics is None:
        return
    if getattr(magics, "_auto", None) is not None:
        magics._auto.disable()  # the display printers that were there before come back
    if release_freed_graphs in shell.events.callbacks.get("post_run_cell", []):
        shell.events.unregister("post_run_cell", release_freed_graphs)
    keeper.sweep()
    for kind, table in magics.magics.items():
        for name in table:
            shell.magics_manager.magics[kind].pop(name, None)
    if magics in shell.configurables:
        shell.configurables.remove(magics)
    set_display_mode("auto")
