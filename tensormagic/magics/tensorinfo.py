"""``%tensorinfo``: parse the line, resolve the expression, call the engine, return the report."""

from __future__ import annotations

import argparse
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class, output_can_be_silenced

from tensormagic.engine import tensorinfo as tensorinfo_engine
from tensormagic.engine.layers import DEFAULT_LAYER_BUDGET
from tensormagic.engine.namespace import describe_non_array, is_inspectable
from tensormagic.engine.sharding import MeetingError, is_dtensor
from tensormagic.engine.sharding.global_stats import DEFAULT_TIMEOUT
from tensormagic.engine.tensorinfo import DEFAULT_BUDGET
from tensormagic.engine.tensorinfo.pictures import PictureError
from tensormagic.engine.tensorinfo.pictures import options as picture_options
from tensormagic.magics.common import UserNamespace, argument, magic_arguments, parse_line
from tensormagic.magics.model_options import check_model, layers_report, split_model_options


@magics_class
class TensorinfoMagics(UserNamespace):
    """``%tensorinfo``."""

    @output_can_be_silenced
    @magic_arguments()
    @argument(
        "--budget",
        type=int,
        default=None,
        metavar="N",
        help=f"compute statistics exactly up to N elements, from a sample above (default {DEFAULT_BUDGET:,}; each activation of --input: {DEFAULT_LAYER_BUDGET:,})",
    )
    @argument("--exact", action="store_true", help="always compute exact statistics, however large the tensor")
    @argument("--image", action="store_true", help="draw it as an image: (3, H, W), (H, W, 3), (N, 3, H, W) (the first few), (1, H, W) or (H, W) grey; floats in [0, 1], integers in [0, 255], values outside clipped and counted")
    @argument("--channels", action="store_true", help="one small picture per channel, each with its own min, max, mean, std and NaN count: (C, H, W), (N, C, H, W) or (H, W, 3)")
    @argument("--heatmap", action="store_true", help="a heatmap of the last two dims (the first few slices), NaN, +inf and -inf in their own colours")
    @argument("--hist", action="store_true", help="the histogram chart (true counts of every element within --budget)")
    @argument("--no-pictures", action="store_true", help="no pictures at all (by default: an image view for images, channels for feature maps, a heatmap for 2-D, a histogram for all)")
    @argument("--denorm", metavar="MEAN,STD", help="undo a normalisation before the image view: imagenet, MEAN,STD, or one mean per channel then one std per channel (0.485,0.456,0.406,0.229,0.224,0.225)")
    @argument("--global", dest="global_", action="store_true", help="a DTensor only: statistics of the whole tensor, from one all_gather of a few numbers per rank (every rank of the mesh must run it at once, e.g. %%px %%tensorinfo --global x); default: this rank's local shard, with no communication")
    @argument("--timeout", type=float, default=None, metavar="SECONDS", help=f"with --global: how long to wait for every rank before giving up with an error and communicating nothing (default {DEFAULT_TIMEOUT:g})")
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
            %tensorinfo --budget 1000000 x
            %tensorinfo --exact x
            %tensorinfo --image img       # pictures: --image, --channels, --heatmap, --hist
            %tensorinfo --denorm imagenet batch   # an ImageNet-normalised batch, as images
            %tensorinfo --no-pictures x

        Statistics are computed where the data lives, exactly up to --budget elements and from a
        fixed-seed sample above it (labelled as such); --exact computes them exactly whatever the
        size.  --budget and --exact come before the expression; --input and --input-size may
        follow the model.  Pictures are drawn where the tensor lives, at most 512 x 512 pixels each:
        by default an image view of image-shaped tensors with intensities (floats in [0, 1], uint8),
        a channel view of other (C, H, W) / (N, C, H, W) tensors, a heatmap of 2-D ones (of the last
        two dims of others) and a histogram; asking for one (--image, --channels, --heatmap, --hist)
        shows only those asked for.
        A DTensor (FSDP2, tensor parallel) is described on this rank without communication: its
        mesh, placements, every rank's block and the statistics of the local shard;
        ``%tensorinfo --global x`` on every rank at once gives the whole tensor's statistics
        (``--timeout SECONDS``: how long to wait for the other ranks, default 5).
        """
        try:
            args = parse_line(self.tensorinfo, line)
        except UsageError as exc:
            if "unrecognized arguments: -" in str(exc):
                raise UsageError(f"{exc}; to inspect an expression that starts with '-', wrap it in parentheses: %tensorinfo (-x)") from None
            raise
        args.expr, late_input, late_size = split_model_options(args.expr)
        input_expr, input_size = args.input or late_input, args.input_size or late_size
        flags = ("--budget", "--exact", "--global", "--timeout", "--image", "--channels", "--heatmap", "--hist", "--no-pictures", "--denorm")
        late = [tok for tok in args.expr if tok in flags or tok.startswith(("--budget=", "--timeout=", "--denorm="))]
        if late:
            example = {"--budget": " N", "--timeout": " SECONDS", "--denorm": " imagenet"}.get(late[0].split("=")[0], "")
            raise UsageError(f"{late[0]} must come before the expression, e.g. %tensorinfo {late[0].split('=')[0]}{example} x")
        if args.timeout is not None and not args.global_:
            raise UsageError("--timeout applies to --global (how long to wait for every rank), e.g. %tensorinfo --global --timeout 10 x")
        if args.timeout is not None and not (0 < args.timeout <= 3600):
            raise UsageError(f"--timeout must be a number of seconds between 0 and 3600, not {args.timeout:g}")
        try:
            pictures = picture_options(image=args.image, channels=args.channels, heatmap=args.heatmap, hist=args.hist, pictures=not args.no_pictures, denorm=args.denorm)
        except PictureError as exc:
            raise UsageError(str(exc)) from None
        if args.budget is not None and args.budget <= 0:
            raise UsageError(f"--budget must be a positive number of elements, not {args.budget}")
        if args.exact and args.budget is not None:
            raise UsageError("--exact and --budget conflict: --exact computes every statistic exactly, --budget N only up to N elements; give one")
        budget = 2**62 if args.exact else (args.budget if args.budget is not None else DEFAULT_BUDGET)
        expr = " ".join(args.expr).strip()
        if not expr:
            if input_expr or input_size:
                raise UsageError(f"{'--input' if input_expr else '--input-size'} needs the model to run, e.g. %tensorinfo model {'--input x' if input_expr else '--input-size 8,3,32,32'}")
            asked = [f for f, on in (("--image", args.image), ("--channels", args.channels), ("--heatmap", args.heatmap), ("--hist", args.hist), ("--denorm", args.denorm), ("--no-pictures", args.no_pictures)) if on]
            if asked:
                raise UsageError(f"{asked[0]} applies to one array or tensor; give an expression, e.g. %tensorinfo {asked[0]} x")
            if args.global_:
                raise UsageError("--global applies to one DTensor; give an expression, e.g. %tensorinfo --global x")
            if args.exact or args.budget is not None:
                raise UsageError(f"{'--exact' if args.exact else '--budget'} applies to one array or tensor; give an expression, e.g. %tensorinfo {'--exact' if args.exact else '--budget N'} x")
            return tensorinfo_engine.inspect_namespace(self.user_ns, self.hidden)
        obj = self.resolve(expr)
        if not is_inspectable(obj):
            raise UsageError(f"{expr} {describe_non_array(obj)}")
        if input_expr or input_size:
            check_model(expr, obj, input_expr, input_size)
        if args.global_ and not is_dtensor(obj):
            raise UsageError(f"--global is for DTensors (sharded over ranks); {expr} is a {type(obj).__name__} whose statistics already cover all its values: %tensorinfo {expr}")
        if args.global_ and (input_expr or input_size):
            raise UsageError("--global and --input do not combine: --global is for one DTensor")
        try:
            report = tensorinfo_engine.inspect_object(expr, obj, self.user_ns, budget, self.hidden, pictures=pictures, global_stats=args.global_, timeout=args.timeout)
        except (tensorinfo_engine.UninspectableError, MeetingError) as exc:
            raise UsageError(str(exc)) from None
        except PictureError as exc:
            message = str(exc)
            raise UsageError(message if message.startswith(expr) else f"{expr}: {message}") from None
        if input_expr or input_size:
            layer_budget = budget if args.exact or args.budget is not None else DEFAULT_LAYER_BUDGET
            return layers_report(expr, obj, input_expr, input_size, layer_budget, self.resolve, base=report)
        return report


__all__ = ["TensorinfoMagics"]
