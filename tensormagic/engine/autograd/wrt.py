"""``--wrt``: only the rows of the named inputs (a row saying why, for names with no gradient)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tensormagic.engine.autograd.options import AutogradUsageError
from tensormagic.engine.autograd.outputs import evaluate
from tensormagic.engine.autograd.records import CallRecord
from tensormagic.engine.autograd.report import GradientRow, Status
from tensormagic.engine.autograd.rows import RowBuilder


def wrt_rows(exprs: Sequence[str], rows: list[GradientRow], records: Sequence[CallRecord], namespace: Mapping[str, Any], builder: RowBuilder) -> list[GradientRow]:
    """The rows of ``exprs`` (names, aliases or expressions), in that order."""
    keep: list[GradientRow] = []
    for expr in exprs:
        found = [r for r in rows if r.wrt == expr or expr in r.aliases]
        if found:
            keep += found
            continue
        value = evaluate(expr, namespace)
        if not isinstance(value, torch.Tensor):
            raise AutogradUsageError(f"--wrt {expr}: {expr} is a {type(value).__name__}, not a tensor")
        same = [r for r in rows if r.wrt in builder.names.tensors.get(id(value), [])]
        if same:  # an expression for a tensor that has a row under another name
            keep += same
            continue
        shape, dtype = list(value.shape), str(value.dtype)
        for record in records:
            of = builder.of(record)
            if value.requires_grad:
                row = GradientRow(wrt=expr, of=of, status=Status.UNUSED, reason=f"{expr} requires grad but {of} does not depend on it", fix=f"use {expr} in computing {of}")
            elif not (value.is_floating_point() or value.is_complex()):
                row = GradientRow(wrt=expr, of=of, status=Status.INTEGER_DTYPE, reason=f"{expr} has dtype {value.dtype}: integer tensors cannot have gradients", fix=f"use {expr}.float()")
            else:
                row = GradientRow(wrt=expr, of=of, status=Status.NO_REQUIRES_GRAD, reason=f"{expr} has requires_grad=False, so autograd computes no gradient for it", fix=f"create it with requires_grad=True or call {expr}.requires_grad_()")
            row.shape, row.dtype = shape, dtype
            keep.append(row)
    return keep


__all__ = ["wrt_rows"]
