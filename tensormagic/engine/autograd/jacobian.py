"""Full Jacobians of non-scalar outputs, in whichever mode is cheaper, within a time budget.

A Jacobian of ``m`` outputs by ``n`` inputs costs ``m`` vector-Jacobian products (rows, reverse
mode) or ``n`` Jacobian-vector products (columns).  Only the graph is at hand (the cell is not
re-run), so columns come from the double-backward trick: ``g(u) = J^T u`` with
``create_graph=True``, then ``J v = d(g . v)/du``.  Products are batched (``is_grads_batched``),
a chunk at a time; the cost is estimated from the cell's own backward time before starting,
and re-projected after every chunk, so a Jacobian that would take too long stops early and
says how long it would take.
"""

from __future__ import annotations

import functools
import math
import os
import time

import torch

from tensormagic.engine.autograd.extra import ExtraWork
from tensormagic.engine.autograd.guards import without_user_modes
from tensormagic.engine.autograd.report import JacobianInfo
from tensormagic.engine.autograd.walk import Walk
from tensormagic.engine.naming import describe_exception, format_bytes

#: Jacobians up to this many entries keep their values in the report; bigger ones a summary.
JACOBIAN_VALUES = 4_096
#: Products computed together in one batched pass, at most.
MAX_CHUNK = 1_024


def free_bytes(device: torch.device) -> int | None:
    """Free memory where ``device`` lives, when it can be told (None: unknown)."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        if device.type == "cpu":
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError, RuntimeError):
        return None
    return None


class _TooSlow(Exception):
    def __init__(self, projected: float, done: float) -> None:
        self.projected = projected
        self.done = done


@functools.cache
def _warm_up() -> None:
    """One batched double backward on a tiny graph of the magic's own, once per process, so that
    the one-time set-up of batched gradients (vmap's rules: a quarter of a second, seconds on a
    busy machine) is neither counted against the time budget nor projected onto the Jacobian."""
    try:
        with torch.enable_grad(), without_user_modes():
            x = torch.zeros(2, requires_grad=True)
            y = x * 2.0
            u = torch.zeros_like(y, requires_grad=True)
            (g,) = torch.autograd.grad([y], [x], [u], create_graph=True)
            torch.autograd.grad([g], [u], [torch.eye(2)], is_grads_batched=True)
    except Exception:  # noqa: BLE001 - only a warm-up: the Jacobian reports its own errors
        pass


def jacobian(name: str, output: torch.Tensor, inputs: list[tuple[str, torch.Tensor]], budget_entries: int, extra: ExtraWork, walk: Walk) -> list[JacobianInfo]:
    """The Jacobian of ``output`` w.r.t. each input, or nothing and a NotComputed saying why."""
    what = f"the Jacobian of {name}"
    m = output.numel()
    n = sum(t.numel() for _, t in inputs)
    if not inputs or m <= 1:
        return []
    entries = m * n
    wrt = ", ".join(n for n, _ in inputs[:4]) + ("…" if len(inputs) > 4 else "")
    if entries > budget_entries:
        extra.skip(what, f"with respect to {wrt} it would have {entries:,} entries ({m:,} outputs x {n:,} inputs, {format_bytes(entries * output.element_size())}), above the budget of {budget_entries:,}; the gradients shown are vector-Jacobian products with ones", "jacobian_budget")
        return []
    need = entries * max(output.element_size(), 8) * 2  # the Jacobian and its float64 copy
    free = free_bytes(output.device)
    if free is not None and need > free // 2:
        extra.skip(what, f"it would have {entries:,} entries and need {format_bytes(need)}, but only {format_bytes(free)} of {output.device.type} memory is free; the gradients shown are vector-Jacobian products with ones")
        return []
    forward = n < m  # columns are fewer than rows
    count = n if forward else m
    chunk = max(1, min(MAX_CHUNK, count, budget_entries // max(m, n, 1)))
    passes = math.ceil(count / chunk) + (1 if forward else 0)
    if not extra.allowed(what, walk, passes):
        return []
    _warm_up()
    deadline = extra.budget_s - extra.spent_s
    t0 = time.perf_counter()
    tensors = [t for _, t in inputs]
    try:
        with torch.enable_grad(), without_user_modes():  # a mode of the cell's never sees the magic's ops
            try:
                parts = _columns(output, tensors, chunk, t0, deadline) if forward else _rows(output, tensors, chunk, t0, deadline)
                mode = "forward" if forward else "reverse"
            except _TooSlow:
                raise
            except Exception:
                if not forward:
                    raise
                parts, mode = _rows(output, tensors, chunk, t0, deadline), "reverse"
    except _TooSlow as slow:
        extra.skip(what, f"it would take about {slow.projected:.1f} s ({slow.done:.0%} was done when it stopped, over the magic's budget of {extra.budget_s:g} s)", "extra_seconds", slow.projected)
        return []
    except Exception as exc:  # noqa: BLE001
        extra.skip(what, f"computing it failed: {describe_exception(exc)}")
        return []
    finally:
        extra.timed(t0)
    out: list[JacobianInfo] = []
    for (wname, t), full in zip(inputs, parts):
        full = full.reshape(*output.shape, *t.shape)
        with torch.no_grad():
            fd = full.detach().to(torch.complex128 if full.is_complex() else torch.float64).cpu()
            mag = fd.abs() if fd.is_complex() else fd
            summary = {"norm": float(torch.linalg.vector_norm(mag)), "min": float(mag.min()) if mag.numel() else 0.0, "max": float(mag.max()) if mag.numel() else 0.0}
            values = fd.tolist() if fd.numel() <= JACOBIAN_VALUES else None
        out.append(JacobianInfo(of=name, wrt=wname, shape=list(full.shape), entries=full.numel(), values=values, summary=summary, mode=mode))
    return out


def _check_time(t0: float, deadline: float, done: int, total: int) -> None:
    spent = time.perf_counter() - t0
    if done < total and spent > 0:
        projected = spent * total / done
        if projected > deadline:
            raise _TooSlow(projected, done / total)


def _rows(output: torch.Tensor, tensors: list[torch.Tensor], chunk: int, t0: float, deadline: float) -> list[torch.Tensor]:
    """Reverse mode: ``chunk`` rows of J per batched pass."""
    flat = output.reshape(-1)
    m = flat.numel()
    got: list[list[torch.Tensor]] = [[] for _ in tensors]
    for start in range(0, m, chunk):
        c = min(chunk, m - start)
        eye = torch.zeros(c, m, dtype=output.dtype, device=output.device)
        eye[torch.arange(c), torch.arange(start, start + c)] = 1
        rows = torch.autograd.grad([flat], tensors, [eye], retain_graph=True, allow_unused=True, is_grads_batched=True)
        for j, (t, r) in enumerate(zip(tensors, rows)):
            got[j].append(r if r is not None else torch.zeros((c, *t.shape), dtype=t.dtype, device=t.device))
        _check_time(t0, deadline, start + c, m)
    return [torch.cat([p.reshape(p.shape[0], -1) for p in parts]) for parts in got]


def _columns(output: torch.Tensor, tensors: list[torch.Tensor], chunk: int, t0: float, deadline: float) -> list[torch.Tensor]:
    """Forward mode through double backward: ``chunk`` columns of J per batched pass."""
    u = torch.zeros_like(output, requires_grad=True)
    gs = torch.autograd.grad([output], tensors, [u], retain_graph=True, create_graph=True, allow_unused=True)
    m = output.numel()
    out: list[torch.Tensor] = []
    total = sum(t.numel() for t in tensors)
    done = 0
    for t, g in zip(tensors, gs):
        k = t.numel()
        if g is None or not g.requires_grad:
            out.append(torch.zeros(m, k, dtype=output.dtype, device=output.device))
            done += k
            continue
        gflat = g.reshape(-1)
        cols: list[torch.Tensor] = []
        for start in range(0, k, chunk):
            c = min(chunk, k - start)
            eye = torch.zeros(c, k, dtype=g.dtype, device=g.device)
            eye[torch.arange(c), torch.arange(start, start + c)] = 1
            (col,) = torch.autograd.grad([gflat], [u], [eye], retain_graph=True, allow_unused=True, is_grads_batched=True)
            cols.append(col.reshape(c, m) if col is not None else torch.zeros(c, m, dtype=output.dtype, device=output.device))
            done += c
            _check_time(t0, deadline, done, total)
        out.append(torch.cat(cols).T.contiguous())  # (m, k): rows are outputs
    return out


__all__ = ["JACOBIAN_VALUES", "free_bytes", "jacobian"]
