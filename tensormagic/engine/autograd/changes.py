"""What the cell's backward calls did to each leaf's ``.grad``, in one sentence.

``w.grad += 3.0, now 13.0``; ``w.grad was None, now 6.0 (added over 2 backward calls)``; in a
training loop ``last of 100 backward calls; .grad was reset by zero_grad in between``.  Sums
are exact (``.grad`` now minus ``.grad`` before the cell's first call, complex stays complex)
for small tensors; big ones are described by their norms.
"""

from __future__ import annotations

import math
from typing import Any

from tensormagic.engine.autograd.recorder import Recorder
from tensormagic.engine.autograd.summary import GradSummary, difference, summarise


def short(value: Any) -> str:
    """A number or list in a sentence: ``3.0``, ``0.1235``, ``[1.0, 2.0]``."""
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
            return f"{value:.1f}"
        return f"{value:.4g}"
    if isinstance(value, complex):
        return f"{value:.4g}"
    if isinstance(value, list):
        flat = str(value[:12])  # (enough for 60 characters: a 64-value list is not written out to be cut)
        if len(value) > 12:
            flat = flat[:-1] + ", …]"
        return flat if len(flat) <= 60 else flat[:57] + "…"
    return str(value)


def grad_change(recorder: Recorder, key: int, name: str, known: GradSummary | None = None) -> str | None:
    """The sentence for the leaf ``key`` (None when no backward call of the cell reached it);
    ``known``: a summary that may be of its ``.grad`` now (used if it is, not made again)."""
    track = recorder.leaves.get(key)
    if track is None:
        return None
    t = track.ref()
    if t is None:
        return None
    # the calls that reached this very tensor (a freed leaf's id may have been given to a new one)
    calls = sum(c.repeats for c in recorder.calls if c.kind == "backward" and c.error is None and (target := c.targets.get(key)) is not None and target.ref() is t)
    if calls == 0:
        return None
    g = t.grad
    now = known if known is not None and known.is_of(g) else (summarise(g) if g is not None else None)
    now_plain = now.plain() if now is not None else None
    if now_plain is None:
        now_text = "None (set to None by the cell after its backward)"
    elif now_plain.get("value") is not None:
        now_text = short(now_plain["value"])
    else:
        now_text = f"norm {short(now_plain.get('norm'))}"
    over = f" over {calls:,} backward calls" if calls > 1 else ""
    if track.reset or track.changed:
        between = []
        if track.reset:
            between.append("reset by zero_grad (set to None)")
        if track.changed:
            between.append("changed in place (zero_grad(set_to_none=False), clipping or the cell's own code)")
        return f"{name}.grad: last of {calls:,} backward calls; .grad was {' and '.join(between)} in between; now {now_text}"
    added = difference(now, track.before) if now is not None else None
    if not track.had_grad:
        return f"{name}.grad was None, now {now_text}" + (f" (added{over})" if calls > 1 else "")
    if added is not None:
        return f"{name}.grad += {short(added)}{over}, now {now_text}"
    before = track.before.plain() if track.before is not None else None
    before_text = f"norm {short(before.get('norm'))}" if before is not None else "a value"
    return f"{name}.grad accumulated {calls:,} backward call{'s' if calls > 1 else ''} onto its previous value ({before_text} before, {now_text} now)"


__all__ = ["grad_change", "short"]
