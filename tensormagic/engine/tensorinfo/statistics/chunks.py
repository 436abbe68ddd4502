"""Covering a tensor or array with small pieces, and drawing fixed-seed samples of it.

Nothing here copies a whole tensor: pieces are views (or copies of at most ``max_elems``
elements), and samples are read straight from the storage a block of indices at a time.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from tensormagic.engine.tensorinfo.statistics.values import CPU_CHUNK

#: Indices drawn at a time when sampling on the CPU (int64 temporaries of some 100 KiB), and on
#: an accelerator (fewer kernel launches; a few MiB).
SAMPLE_BLOCK = 2**12

DEVICE_SAMPLE_BLOCK = 2**16


def chunk_size(t: torch.Tensor) -> int:
    if t.device.type == "cpu":
        return CPU_CHUNK
    # On an accelerator, chunks as large as the memory goal allows (kernel launches are the
    # cost): each chunk's few float64 temporaries stay near 2% of the tensor's own bytes.
    return int(min(max(t.numel() * t.element_size() // 2000, 2**16), 2**26))


def iter_chunks(t: torch.Tensor, max_elems: int) -> Iterator[torch.Tensor]:
    """Yield 1-D pieces that cover every element of ``t`` once, each at most ``max_elems``.

    Dense tensors (any dim order) are split as views; other layouts are split along their
    outer dimensions so that any copy made by ``reshape`` is at most ``max_elems`` elements.
    """
    while t.dim() > 0 and t.shape[0] == 1:
        t = t[0]
    n = t.numel()
    if n == 0:
        return
    if n <= max_elems:
        yield t.reshape(-1)
        return
    order = sorted(range(t.dim()), key=lambda d: t.stride(d), reverse=True)
    dense = t.permute(order)
    if dense.is_contiguous():
        flat = dense.view(-1)
        for start in range(0, n, max_elems):
            yield flat[start : start + max_elems]
        return
    per_row = n // t.shape[0]
    step = max(1, max_elems // per_row)
    for start in range(0, t.shape[0], step):
        yield from iter_chunks(t[start : start + step], max_elems)


def pieces(t: torch.Tensor, max_elems: int, dim: int = 0) -> Iterator[torch.Tensor]:
    """Yield sub-tensors (``narrow`` views, dims kept) that cover ``t`` once, each small.

    Unlike :func:`iter_chunks` this never reshapes, so it works for quantized tensors (whose
    pieces are then dequantized one at a time) and any layout that supports ``narrow``.
    """
    n = t.numel()
    if n == 0:
        return
    if n <= max_elems or dim >= t.dim():
        yield t
        return
    size = t.shape[dim]
    per = n // size
    if per > max_elems:
        for i in range(size):
            yield from pieces(t.narrow(dim, i, 1), max_elems, dim + 1)
        return
    step = max(1, max_elems // per)
    for start in range(0, size, step):
        yield t.narrow(dim, start, min(step, size - start))


def numpy_pieces(a: np.ndarray, max_elems: int, dim: int = 0) -> Iterator[np.ndarray]:
    """:func:`pieces` for NumPy arrays: basic-slicing views that cover ``a`` once, each small."""
    n = a.size
    if n == 0:
        return
    if n <= max_elems or dim >= a.ndim:
        yield a
        return
    size = a.shape[dim]
    per = n // size
    lead = (slice(None),) * dim
    if per > max_elems:
        for i in range(size):
            yield from numpy_pieces(a[(*lead, slice(i, i + 1))], max_elems, dim + 1)
        return
    step = max(1, max_elems // per)
    for start in range(0, size, step):
        yield a[(*lead, slice(start, start + step))]


def dense_flat(t: torch.Tensor) -> torch.Tensor | None:
    """A 1-D view of every element of ``t`` when its memory is dense in some dim order
    (contiguous, transposed, channels_last...); None when it has gaps or repeats."""
    if t.dim() == 0:
        return t.reshape(1)
    order = sorted(range(t.dim()), key=lambda d: t.stride(d), reverse=True)
    dense = t.permute(order)
    if dense.is_contiguous():
        return dense.view(-1)
    return None


def _take(flat: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``flat[index]``, through ``index_select`` (several times faster) where the dtype has it."""
    try:
        return flat.index_select(0, index)
    except (NotImplementedError, RuntimeError):  # e.g. uint16/32/64 have no index_select kernel
        return flat[index]


def sample_values(t: torch.Tensor, k: int) -> torch.Tensor:
    """A fixed-seed random sample of ``k`` elements of a strided tensor (with replacement).

    Offsets are computed from the strides and read straight from the storage, a block of
    indices at a time, so nothing the size of ``t`` (or many times ``k``) is made, and a private
    generator leaves the user's RNG state alone.
    """
    dense = dense_flat(t) if t.layout == torch.strided else None
    if dense is not None:  # any dense layout: a uniform sample of its 1-D view is one of t
        t = dense
    gen = torch.Generator(device=t.device)
    gen.manual_seed(0)
    span = sum((s - 1) * st for s, st in zip(t.shape, t.stride()) if st > 0) + 1
    lowest = sum((s - 1) * st for s, st in zip(t.shape, t.stride()) if st < 0)
    flat = t.as_strided((span - lowest,), (1,), t.storage_offset() + lowest)
    out = torch.empty(k, dtype=t.dtype, device=t.device)
    on_cpu = t.device.type == "cpu"
    unit = t.dim() == 1 and t.stride(0) == 1  # offsets are the drawn indices themselves
    rng = np.random.default_rng(0)  # private: the user's NumPy and torch RNGs are untouched
    block = SAMPLE_BLOCK if on_cpu else DEVICE_SAMPLE_BLOCK
    for start in range(0, k, block):
        m = min(block, k - start)
        if on_cpu:  # index arithmetic in NumPy: single-threaded, no parallel-region overhead
            rest = rng.integers(0, t.numel(), m, dtype=np.int64)
            if unit:
                offsets_np = rest
            else:
                offsets_np = np.full(m, -lowest, dtype=np.int64)
                for size, stride in zip(reversed(t.shape), reversed(t.stride())):
                    offsets_np += (rest % size) * stride
                    rest //= size
            out[start : start + m] = _take(flat, torch.from_numpy(offsets_np))
            continue
        rest_t = torch.randint(0, t.numel(), (m,), generator=gen, device=t.device)
        if unit:
            out[start : start + m] = _take(flat, rest_t)
            continue
        offsets = torch.full((m,), -lowest, dtype=torch.int64, device=t.device)
        for size, stride in zip(reversed(t.shape), reversed(t.stride())):
            offsets += (rest_t % size) * stride
            rest_t = rest_t // size
        out[start : start + m] = _take(flat, offsets)
    return out
