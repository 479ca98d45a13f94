"""Device and dtype choices, attention kernels, synchronised timing and honest memory readings.

Devices are written as torch writes them: ``cpu``, ``cuda``, ``cuda:N``, ``mps``; ``auto`` picks
CUDA, then Apple's MPS, then the CPU. Every helper here takes any of those strings, so callers
compare :func:`device_type` (``"cuda"`` for ``cuda:1``), never the raw string.
"""

from __future__ import annotations

import os
import re
import resource
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmlab.errors import LabError

if TYPE_CHECKING:
    import torch

#: What ``--device`` accepts (``cuda:N`` too); shown in help and error messages.
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def device_type(device: str) -> str:
    """``cpu``, ``cuda`` or ``mps`` for any device string (``cuda:1`` -> ``cuda``)."""
    return device.split(":", 1)[0]


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def check_device_text(device: str) -> str:
    """Validate the spelling of a device (no hardware check); for argument parsers."""
    if not _DEVICE.match(device):
        raise LabError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    return device


def resolve_device(device: str = "auto") -> str:
    """Turn ``auto`` into the best device present; refuse a device this machine lacks."""
    import torch

    check_device_text(device)
    cuda = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if cuda else "mps" if _mps_available() else "cpu"
    kind = device_type(device)
    if kind == "cuda":
        if not cuda:
            raise LabError(
                f"--device {device} was asked for but this machine has no CUDA GPU; "
                "use --device cpu (or auto)"
            )
        if ":" in device and int(device.split(":")[1]) >= torch.cuda.device_count():
            raise LabError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA "
                f"device(s), numbered from 0"
            )
    if kind == "mps" and not _mps_available():
        raise LabError("--device mps needs Apple silicon with PyTorch's MPS backend; use cpu")
    return device


def default_dtype(device: str) -> torch.dtype:
    """float32 on CPU (its fast kernels); bfloat16 on CUDA where the card has it, else float16;
    float16 on MPS (bfloat16 there depends on the macOS version)."""
    import torch

    kind = device_type(device)
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if kind == "mps":
        return torch.float16
    return torch.float32


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """Map a dtype name to torch; ``auto`` is :func:`default_dtype` for the device."""
    import torch

    if dtype not in DTYPES:
        raise LabError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if dtype == "auto":
        return default_dtype(device)
    if dtype == "float16" and device_type(device) == "cpu":
        # Many CPU kernels lack float16 (or run it very slowly); bfloat16 is the CPU half type.
        raise LabError("float16 is not supported on CPU here; use --dtype bfloat16 or float32")
    return getattr(torch, dtype)


def has_flash_attention() -> bool:
    import importlib.util

    return importlib.util.find_spec("flash_attn") is not None


def resolve_attention(wanted: str, device: str, dtype: torch.dtype) -> str:
    """``auto``: FlashAttention-2 on CUDA in a half type where the flash-attn package is
    installed, else torch's sdpa. An explicit kernel is kept as asked."""
    import torch

    if wanted != "auto":
        return wanted
    half = dtype in (torch.float16, torch.bfloat16)
    if device_type(device) == "cuda" and half and has_flash_attention():
        return "flash_attention_2"
    return "sdpa"


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def synchronize(device: str) -> None:
    """Wait for queued kernels, so wall-clock timing covers the work (CUDA and MPS run
    asynchronously)."""
    kind = device_type(device)
    if kind == "cuda":
        import torch

        torch.cuda.synchronize(device)
    elif kind == "mps":
        import torch

        torch.mps.synchronize()


def reset_peak_memory(device: str) -> None:
    if device_type(device) == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats(device)


@dataclass(frozen=True)
class DeviceMemory:
    """One memory figure and what it is, in words (the label travels with the number)."""

    bytes: int
    kind: str
    reserved_bytes: int | None = None  # CUDA: the caching allocator's peak hold


def peak_memory(device: str) -> DeviceMemory:
    """The call's memory figure, as honest as the device allows.

    CUDA: peak allocated since :func:`reset_peak_memory`, with the peak reserved beside it.
    MPS: torch reports no peak; the driver's current allocation is given, labelled so.
    CPU: the OS only reports the process's lifetime peak RSS, labelled as that.
    """
    kind = device_type(device)
    if kind == "cuda":
        import torch

        return DeviceMemory(
            int(torch.cuda.max_memory_allocated(device)),
            "CUDA peak allocated",
            int(torch.cuda.max_memory_reserved(device)),
        )
    if kind == "mps":
        import torch

        return DeviceMemory(int(torch.mps.driver_allocated_memory()), "MPS allocated (no peak)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return DeviceMemory(rss if sys.platform == "darwin" else rss * 1024, "process peak RSS")


def peak_memory_bytes(device: str) -> int:
    return peak_memory(device).bytes


def free_memory_bytes(device: str) -> int:
    """Bytes a new allocation could take now: the card's free memory on CUDA, the system's
    available RAM on CPU and MPS (unified memory)."""
    if device_type(device) == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    import psutil  # a dependency of accelerate, which llmlab requires

    return int(psutil.virtual_memory().available)


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]?i?B)?\s*$", re.IGNORECASE)
#: No machine has an exabyte of memory: a larger size is a typo, not a budget.
MAX_SIZE = 10**18
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """``"200MB"``, ``"1.5GiB"``, ``"4096"`` -> bytes (accelerate's units: MB = 10^6)."""
    m = _SIZE.match(text) if isinstance(text, str) else None
    if not m:
        raise LabError(f"cannot read {text!r} as a size; write e.g. 200MB or 2GiB")
    size = float(m.group(1)) * _UNITS[(m.group(2) or "").lower()]
    if size > MAX_SIZE:
        raise LabError(f"{text.strip()!r} is more memory than any machine has; write e.g. 64GB")
    return int(size)


def parse_max_memory(text: str) -> tuple[dict[int | str, int], bool]:
    """``--max-memory`` text -> (accelerate's ``max_memory`` dict, whether disk offload is
    allowed). ``"0=20GB,1=20GB,cpu=64GB,disk"``: GPU indices (or ``cuda:N``), ``cpu``, ``mps``;
    a bare ``disk`` allows spilling what does not fit to disk."""
    budget: dict[int | str, int] = {}
    disk = False
    for item in filter(None, (s.strip() for s in text.split(","))):
        if item == "disk":
            disk = True
            continue
        if "=" not in item:
            raise LabError(f"--max-memory: {item!r} is not DEVICE=SIZE; e.g. 0=20GB,cpu=200MB,disk")
        key, size = (s.strip() for s in item.split("=", 1))
        if key.startswith("cuda:"):
            key = key.removeprefix("cuda:")
        if key.isdigit():
            budget[int(key)] = parse_size(size)
        elif key in ("cpu", "mps"):
            budget[key] = parse_size(size)
        else:
            raise LabError(f"--max-memory: unknown device {key!r}; use N (a GPU), cpu, mps, disk")
    if not budget and not disk:
        raise LabError("--max-memory is empty; e.g. cpu=200MB,disk")
    return budget, disk


# -- models bigger than one device (accelerate's device maps) ------------------------------------

DEVICE_MAPS = ("auto", "balanced", "sequential")


def offload_folder(spec: str, cache: Path) -> str:
    """Where disk-offloaded weights of ``spec`` go: a folder per model in llmlab's ``cache``."""
    safe = re.sub(r"[^\w.-]+", "_", spec.strip("/")) or "model"
    return str(Path(cache) / "offload" / safe)


def placement_kwargs(device_map: str, max_memory: str | None, spec: str, cache: Path) -> dict:
    """``from_pretrained`` arguments that spread a model over devices within a budget
    (``cache``: llmlab's cache folder, where disk-offloaded weights go)."""
    if device_map not in DEVICE_MAPS:
        raise LabError(
            f"unknown --device-map {device_map!r}; choose one of {', '.join(DEVICE_MAPS)}"
        )
    kwargs: dict = {"device_map": device_map}
    if max_memory:
        budget, disk = parse_max_memory(max_memory)
        if budget:
            if "cpu" not in budget and not disk:
                # accelerate fills the CPU without limit when it is not named; say it plainly.
                import psutil

                budget["cpu"] = int(psutil.virtual_memory().available)
            kwargs["max_memory"] = budget
        if disk:
            kwargs["offload_folder"] = offload_folder(spec, cache)
    return kwargs


def check_placement(model, kwargs: dict) -> None:
    """Refuse a load that spilled to disk without ``disk`` in ``--max-memory`` (transformers
    offloads silently; a user who did not ask for it should not meet seconds-per-token decode)."""
    spilled = "disk" in getattr(model, "hf_device_map", {}).values()
    if spilled and "offload_folder" not in kwargs:
        budget = ", ".join(
            f"{k}={format_bytes(v)}" for k, v in kwargs.get("max_memory", {}).items()
        )
        raise LabError(
            f"the model does not fit in --max-memory {budget}; add ',disk' to offload the rest "
            "to disk (slow), or give the devices more memory"
        )


def _map_device(where: int | str) -> str:
    return f"cuda:{where}" if isinstance(where, int) else str(where)


def input_device(model) -> str:
    """Where a device-mapped model takes its inputs: the device of its first placed module
    (disk-offloaded modules run on the CPU through accelerate's hooks)."""
    device_map = getattr(model, "hf_device_map", None)
    if not device_map:  # everything fitted on one device: transformers keeps no map then
        return str(next(model.parameters()).device)
    where = _map_device(next(iter(device_map.values())))
    return "cpu" if where == "disk" else where


def placement_bytes(model) -> dict[str, int]:
    """Bytes of weights per place (``cuda:0``, ``cpu``, ``disk``...) of a device-mapped model;
    ``{}`` for a model on one device."""
    device_map = getattr(model, "hf_device_map", None)
    if not device_map or set(device_map.values()) in ({"cpu"}, {"mps"}):
        return {}
    if len(set(device_map.values())) == 1 and "disk" not in device_map.values():
        return {}  # one accelerator: shown as its device
    placed: dict[str, int] = {}
    prefixes = sorted(device_map, key=len, reverse=True)  # the most specific module wins
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        owner = next(
            (p for p in prefixes if p == "" or name == p or name.startswith(p + ".")), None
        )
        where = _map_device(device_map[owner]) if owner is not None else str(tensor.device)
        placed[where] = placed.get(where, 0) + tensor.numel() * tensor.element_size()
    return placed


def placement_text(model) -> str:
    """``cuda:0 60% · cpu 30% · disk 10%`` for a device-mapped model, else ``""``."""
    placed = placement_bytes(model)
    total = sum(placed.values()) or 1
    return " · ".join(f"{k} {100 * v / total:.0f}%" for k, v in placed.items())


# -- peak memory over a block ---------------------------------------------------------------


def _current_rss() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class MemoryReading:
    peak_bytes: int
    kind: str  # what was measured, in words
    reserved_bytes: int | None = None  # CUDA only: what the caching allocator held


class PeakMemory:
    """Peak memory over a block: CUDA allocated + reserved, else process RSS sampled by a
    background thread (the OS only keeps the lifetime peak, useless for comparing configs
    run one after another in the same process)."""

    INTERVAL_S = 0.02

    def __init__(self, device: str) -> None:
        self.device = device
        self.reading: MemoryReading | None = None
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif (rss := _current_rss()) is not None:
            self._peak = rss
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.INTERVAL_S):
            self._peak = max(self._peak, _current_rss() or 0)

    def __exit__(self, *exc: Any) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)
            self.reading = MemoryReading(
                int(torch.cuda.max_memory_allocated(self.device)),
                "CUDA peak allocated",
                int(torch.cuda.max_memory_reserved(self.device)),
            )
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _current_rss() or 0)
            self.reading = MemoryReading(self._peak, "process peak RSS while it ran (sampled)")
        else:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            rss = rss if sys.platform == "darwin" else rss * 1024
            self.reading = MemoryReading(rss, "process lifetime peak RSS")
