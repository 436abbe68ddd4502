"""The devices this machine has, what ``auto`` means, and what each device supports.

Pure: asks torch only.  Device strings are parsed here (``cpu``, ``cuda``, ``cuda:N``, ``mps``,
``xpu``, ``xpu:N``, ``meta``, ``auto``); a device that is not present is a :class:`DeviceError`
whose message lists the devices that are.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch

#: The device kinds ``%todevice`` accepts (``auto`` resolves to one of them).
KINDS = ("cpu", "cuda", "mps", "xpu", "meta")
#: What people say for a device, and the device they mean.
_SAID = {"gpu": "cuda", "nvidia": "cuda", "cuda0": "cuda:0", "metal": "mps", "apple": "mps", "intel": "xpu"}


class DeviceError(ValueError):
    """A device (or dtype) string that is malformed or names a device this machine lacks."""


@dataclass(kw_only=True)
class DeviceInfo:
    """One device of this machine."""

    name: str  # "cpu", "cuda:0", "mps", "xpu:0"
    type: str  # "cpu" | "cuda" | "mps" | "xpu"
    label: str  # what it is: "NVIDIA H100 80GB HBM3", "CPU"
    free_bytes: int | None
    total_bytes: int | None
    float64: bool  # supports float64 (and complex128)
    note: str | None = None


def _cuda_devices() -> list[DeviceInfo]:
    found: list[DeviceInfo] = []
    if not torch.cuda.is_available():
        return found
    for i in range(torch.cuda.device_count()):
        free = total = None
        try:
            free, total = (int(v) for v in torch.cuda.mem_get_info(i))
        except Exception:  # noqa: BLE001 - a device we cannot query is still a device
            pass
        try:
            props = torch.cuda.get_device_properties(i)
            label = f"{props.name} (compute capability {props.major}.{props.minor})"
        except Exception:  # noqa: BLE001
            label = "CUDA device"
        found.append(DeviceInfo(name=f"cuda:{i}", type="cuda", label=label, free_bytes=free, total_bytes=total, float64=True))
    return found


def _mps_devices() -> list[DeviceInfo]:
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        return []
    free = total = None
    try:
        total = int(torch.mps.recommended_max_memory())
        free = max(0, total - int(torch.mps.driver_allocated_memory()))
    except Exception:  # noqa: BLE001 - older torch: memory unknown
        pass
    return [DeviceInfo(name="mps", type="mps", label="Apple GPU (Metal Performance Shaders)", free_bytes=free, total_bytes=total, float64=False, note="no float64 or complex128: use float32")]


def _xpu_devices() -> list[DeviceInfo]:
    xpu = getattr(torch, "xpu", None)
    if xpu is None or not xpu.is_available():
        return []
    found = []
    for i in range(xpu.device_count()):
        free = total = None
        label, fp64 = "Intel GPU", True
        try:
            props = xpu.get_device_properties(i)
            label, total = props.name, int(props.total_memory)
            fp64 = bool(getattr(props, "has_fp64", True))
        except Exception:  # noqa: BLE001
            pass
        try:
            free, total = (int(v) for v in xpu.mem_get_info(i))
        except Exception:  # noqa: BLE001 - mem_get_info is recent
            pass
        found.append(DeviceInfo(name=f"xpu:{i}", type="xpu", label=label, free_bytes=free, total_bytes=total, float64=fp64, note=None if fp64 else "no float64: use float32"))
    return found


def available_devices() -> list[DeviceInfo]:
    """Every device this machine has: cpu, then cuda:N, mps and xpu:N (``meta`` is not listed)."""
    cpu = DeviceInfo(name="cpu", type="cpu", label="CPU", free_bytes=None, total_bytes=None, float64=True)
    return [cpu, *_cuda_devices(), *_mps_devices(), *_xpu_devices()]


def device_names(devices: list[DeviceInfo] | None = None) -> list[str]:
    """The names a user can move to here, ``meta`` included."""
    return [d.name for d in (devices if devices is not None else available_devices())] + ["meta"]


def auto_device() -> torch.device:
    """What ``auto`` chooses: the current CUDA device, else MPS, else the current XPU, else CPU.

    The *current* device rather than the emptiest one, so that moving things one at a time with
    ``auto`` always puts them together.
    """
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        return torch.device("xpu", xpu.current_device())
    return torch.device("cpu")


def _absent(kind: str) -> str:
    if kind == "cuda":
        if not torch.backends.cuda.is_built():
            return f"this torch ({torch.__version__}) was built without CUDA"
        return "no CUDA GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
    if kind == "mps":
        return "MPS needs an Apple-silicon Mac with a torch built for it"
    return "no Intel GPU is visible to this torch"


def devices_here() -> str:
    """``devices here: cpu, cuda:0, meta`` (for error messages)."""
    return "devices here: " + ", ".join(device_names())


def parse_device(text: str) -> torch.device:
    """A present device from ``cpu``, ``cuda``, ``cuda:N``, ``mps``, ``xpu[:N]``, ``meta`` or ``auto``.

    ``cuda`` and ``xpu`` without an index become the current device's index, so that reports
    always name a concrete device.  Raises :class:`DeviceError` (one line) otherwise.
    """
    spec = text.strip().strip("'\"").lower()
    if spec == "auto":
        return auto_device()
    kind, _, index = spec.partition(":")
    if kind not in KINDS:
        close = [_SAID.get(kind)] if kind in _SAID else difflib.get_close_matches(kind, (*KINDS, "auto"), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise DeviceError(f"unknown device {text!r}: use cpu, cuda, cuda:N, mps, xpu, meta or auto{hint}")
    if index and (not index.isdigit() or (kind in ("cpu", "meta", "mps") and index != "0")):
        raise DeviceError(f"bad device {text!r}: an index is a number, as in cuda:0 ({devices_here()})")
    if kind in ("cpu", "meta"):
        return torch.device(kind)
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(f"device 'mps' is not present on this machine: {_absent('mps')}; {devices_here()}")
        return torch.device("mps")
    module = torch.cuda if kind == "cuda" else getattr(torch, "xpu", None)
    if module is None or not module.is_available():
        raise DeviceError(f"device {spec!r} is not present on this machine: {_absent(kind)}; {devices_here()}")
    count = module.device_count()
    number = int(index) if index else module.current_device()
    if number >= count:
        raise DeviceError(f"device {spec!r} is not present on this machine: it has {count} {kind.upper()} device{'s' if count != 1 else ''}; {devices_here()}")
    return torch.device(kind, number)


def is_accelerator(device: torch.device) -> bool:
    """True for GPU-like devices (cuda, mps, xpu)."""
    return device.type in ("cuda", "mps", "xpu")


def unsupported_dtype(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why ``device`` cannot hold ``dtype`` (None when it can)."""
    if dtype not in (torch.float64, torch.complex128):
        return None
    if device.type == "mps":
        return f"MPS does not support {dtype}; convert on the way with --dtype {'float32' if dtype == torch.float64 else 'complex64'}"
    if device.type == "xpu":
        try:
            if not getattr(torch.xpu.get_device_properties(device.index or 0), "has_fp64", True):
                return f"{device} has no float64 support; convert on the way with --dtype float32"
        except Exception:  # noqa: BLE001
            return None
    return None


def float64_note(device: torch.device, dtype: torch.dtype) -> str | None:
    """A note when float64 data goes to a GPU that supports it (slow there; torch's default is float32)."""
    if dtype == torch.float64 and device.type in ("cuda", "xpu"):
        return f"float64 on {device}: GPUs run float32 much faster (torch's default dtype); add --dtype float32 unless you need the precision"
    return None


def _dtype_names() -> dict[str, torch.dtype]:
    """Every dtype name torch has (``float32``, ``half``...), mapped to its dtype."""
    names = {}
    for attr in dir(torch):
        value = getattr(torch, attr, None)
        if isinstance(value, torch.dtype):
            names[attr] = value
    return names


def parse_dtype(text: str) -> torch.dtype:
    """``float32``, ``torch.float16``, ``half``, ``bfloat16``... as a torch dtype (or DeviceError)."""
    spec = text.strip().strip("'\"").removeprefix("torch.").removeprefix("np.").removeprefix("numpy.")
    names = _dtype_names()
    if spec in names:
        return names[spec]
    close = difflib.get_close_matches(spec, sorted(names), n=2)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise DeviceError(f"unknown dtype {text!r}: give a torch dtype such as float32, float16, bfloat16 or int64{hint}")


def synchronize(device: torch.device | None = None) -> None:
    """Wait for the work queued on ``device`` (nothing to wait for on cpu and meta); with no
    device, for every CUDA device already in use (timings: never initialises CUDA)."""
    if device is None:
        if torch.cuda.is_initialized():  # (cheap: is_available() costs microseconds, and a training loop asks twice a step)
            torch.cuda.synchronize()
    elif device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
    elif device.type == "xpu":
        torch.xpu.synchronize(device)


def device_label(name: str) -> str:
    """``CPU`` for cpu (as people write it), the device name otherwise."""
    return "CPU" if name == "cpu" else name
