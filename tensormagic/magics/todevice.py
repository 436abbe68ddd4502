"""``%todevice``: parse the line, then show the placement or make the move (all or nothing),
rebind the moved names and return the report."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class, output_can_be_silenced

from tensormagic.engine.todevice import moves as move_engine
from tensormagic.engine.todevice import placement_report
from tensormagic.engine.todevice.devices import KINDS
from tensormagic.magics.common import UserNamespace, argument, magic_arguments, parse_line
from tensormagic.render.actions import offer_move


@magics_class
class TodeviceMagics(UserNamespace):
    """``%todevice``."""

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
            report = placement_report(self.user_ns, self.hidden)
            offer_move(report, lambda device: self._todevice_move(None, device, options))
            return report
        if len(tokens) == 1:
            devices = ", ".join(move_engine.device_names()) + ", auto"
            if tokens[0].split(":")[0].lower() in (*KINDS, "auto"):
                raise UsageError(f"name what to move to {tokens[0]}, e.g. %todevice x model {tokens[0]}, or move everything with %todevice --all {tokens[0]}")
            raise UsageError(f"give the names and then a device, e.g. %todevice {tokens[0]} cuda (devices: {devices})")
        return self._todevice_move(tokens[:-1], tokens[-1], options)

    def _todevice_move(self, names: list[str] | None, device: str, options: dict[str, Any]) -> Any:
        """Move ``names`` (None: what --all moves) to ``device``, rebind them, return the report."""
        ns = self.user_ns
        left: list[str] = []
        skipped: list[str] = []
        everything = names is None
        if names is None:
            names, left = move_engine.movable_names(ns, self.hidden, skipped)
            if not names:
                raise UsageError("nothing to move: no tensors, modules or optimizers in the namespace")
        try:
            outcome = move_engine.move(ns, names, device, hidden=self.hidden, **options)
        except move_engine.MoveError as exc:
            raise UsageError(str(exc)) from None
        ns.update(outcome.bindings)
        report = outcome.report
        if left:
            report.notes.insert(0, f"NumPy arrays left as they are: {', '.join(left)} (name them to make tensors of them)")
        report.notes[:0] = [f"left as it is: {why}" for why in skipped]
        chosen = None if everything else report.names
        offer_move(report, lambda target: self._todevice_move(chosen, target, options))
        return report


__all__ = ["TodeviceMagics"]
