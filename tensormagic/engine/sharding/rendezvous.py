"""A bounded meeting of every rank through the process group's key-value store, before any collective.

A collective entered by some ranks only blocks for the process group's timeout (30 minutes by
default) and then breaks the group for good.  :func:`meet` makes sure every rank is there first:
each rank adds one to a counter in the store (no collective) and waits, up to ``timeout``
seconds, for the counter to reach the world size.  A rank that gives up closes the round with
one atomic ``add`` of :data:`CLOSED`, so every rank (the waiting ones, and any that arrive
later) reaches the same decision: all met (then they may enter the collective) or not (then
none does, each raises a one-line :class:`MeetingError`, and the group stays usable).

Each round also compares what the ranks asked about (a fingerprint: the tensor's global shape,
dtype and placements), so two ranks inspecting different tensors never exchange numbers.
"""

from __future__ import annotations

import time
from typing import Any

#: Added to a round's counter by the rank that gives up (far above any world size).
CLOSED = 1 << 40

#: Every key this module writes starts with this.
PREFIX = "tensormagic/global"

#: Seconds between two looks at the counter.
POLL_S = 0.002


class MeetingError(RuntimeError):
    """Not every rank came (or they asked about different tensors): one line, no collective run."""


def default_store() -> Any:
    """The default process group's store (a private torch helper, guarded)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise MeetingError("--global needs an initialised process group (torch.distributed.init_process_group)")
    try:
        from torch.distributed.distributed_c10d import _get_default_store

        return _get_default_store()
    except (ImportError, RuntimeError, ValueError) as exc:
        raise MeetingError(f"--global needs the process group's store, which this torch does not expose ({exc})") from None


def _count(store: Any, key: str) -> int:
    return int(store.add(key, 0))


def _decision(store: Any, key: str, deadline: float) -> str:
    """The decision the closing rank writes (right after its close): ``met`` or ``closed``."""
    while True:
        try:
            if store.check([key]):
                return bytes(store.get(key)).decode()
        except Exception:  # noqa: BLE001 - a store that cannot check: wait a little longer
            pass
        if time.monotonic() > deadline:
            return "closed"
        time.sleep(POLL_S)


def _missing(came: int, world: int, timeout: float) -> MeetingError:
    return MeetingError(f"only {came} of {world} ranks ran --global within {timeout:g} s: run it on every rank at once (e.g. %px %tensorinfo --global x), or raise --timeout; nothing was communicated")


def meet(rank: int, world: int, fingerprint: str, timeout: float, store: Any | None = None) -> None:
    """Return once every one of ``world`` ranks has called :func:`meet` (with the same
    ``fingerprint``); raise :class:`MeetingError` within about ``timeout`` seconds otherwise."""
    store = store if store is not None else default_store()
    round_id = _count(store, f"{PREFIX}/round")
    base = f"{PREFIX}/r{round_id}"
    counter, decision = f"{base}/n", f"{base}/decision"
    store.set(f"{base}/fp{rank}", fingerprint)
    arrived = int(store.add(counter, 1))
    deadline = time.monotonic() + timeout
    if arrived == world:
        store.add(f"{PREFIX}/round", 1)  # the last to arrive opens the next round, before any collective
    elif arrived >= CLOSED:  # late: a rank already gave up on this round
        _decision(store, decision, deadline + 1.0)
        raise MeetingError(f"the other ranks stopped waiting for this rank (--global waits {timeout:g} s): run it on every rank at once (e.g. %px %tensorinfo --global x); nothing was communicated")
    while arrived < world:
        time.sleep(POLL_S)
        arrived = _count(store, counter)
        if arrived >= CLOSED:  # another rank gave up: its decision holds
            if _decision(store, decision, deadline + 1.0) != "met":
                raise _missing(arrived - CLOSED if arrived < 2 * CLOSED else arrived % CLOSED, world, timeout)
            break
        if arrived < world and time.monotonic() > deadline:
            closed = int(store.add(counter, CLOSED))
            if closed >= 2 * CLOSED:  # someone closed first: its decision holds
                if _decision(store, decision, deadline + 1.0) != "met":
                    raise _missing(closed % CLOSED, world, timeout)
                break
            came = closed - CLOSED
            store.set(decision, "met" if came == world else "closed")
            if came != world:
                store.add(f"{PREFIX}/round", 1)  # the closer opens the next round
                raise _missing(came, world, timeout)
            break  # the last rank came just before the close: all met
    prints = {bytes(store.get(f"{base}/fp{r}")).decode() for r in range(world)}
    if len(prints) > 1:
        while _count(store, f"{PREFIX}/round") <= round_id and time.monotonic() < deadline + 1.0:
            time.sleep(POLL_S)  # the next round must be open before anyone may call again
        raise MeetingError(f"the ranks asked --global about different tensors ({len(prints)} different shapes, dtypes or placements): inspect the same DTensor on every rank; nothing was communicated")


__all__ = ["CLOSED", "MeetingError", "default_store", "meet"]
