"""``%todevice``'s engine: where every tensor lives, and all-or-nothing moves between devices.

Pure (torch and NumPy).  Modules, one job each:

- :mod:`.devices`: the devices this machine has, ``auto``, device and dtype strings.
- :mod:`.placement`: every movable object of a namespace and where its tensors live.
- :mod:`.moves`: :func:`move`, all or nothing (resolve, compute, install, rebind).
- :mod:`.mover`: the compute phase (new objects built, nothing mutated) and its install steps;
  :mod:`.containers`: its dicts, lists and tuples (cycles and shared sub-containers kept).
- :mod:`.consequences`: the warnings about what a move silently breaks.
- :mod:`.report`: the report dataclasses and their builders.
"""

from __future__ import annotations

from tensormagic.engine.todevice.devices import (
    DeviceError,
    DeviceInfo,
    auto_device,
    available_devices,
    device_names,
    parse_device,
    parse_dtype,
)
from tensormagic.engine.todevice.moves import MoveError, MoveOutcome, movable_names, move, resolve_names
from tensormagic.engine.todevice.placement import PlacementRow, placement
from tensormagic.engine.todevice.report import MoveRow, TodeviceReport, placement_report

__all__ = [
    "DeviceError",
    "DeviceInfo",
    "MoveError",
    "MoveOutcome",
    "MoveRow",
    "PlacementRow",
    "TodeviceReport",
    "auto_device",
    "available_devices",
    "device_names",
    "movable_names",
    "move",
    "parse_device",
    "parse_dtype",
    "placement",
    "placement_report",
    "resolve_names",
]
