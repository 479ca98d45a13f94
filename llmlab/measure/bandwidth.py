"""Memory read bandwidth, measured once per machine and device, then cached on disk.

The roofline of LLM decoding is set by how fast weights stream from memory; we measure it with
a reduction over a buffer far larger than any cache, which reads every byte once.
"""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path

from llmlab.measure.latency import time_call

BUFFER_BYTES = 256 * 1024 * 1024


def _cache_file() -> Path:
    from llmlab.models.default import cache_root

    return cache_root() / "bandwidth.json"


def machine_key(device: str) -> str:
    """What identifies the memory system measured: host, CPU or GPU model, thread count, and
    the method."""
    import torch

    if device.startswith("cuda"):
        what = torch.cuda.get_device_name(device)
    else:
        what = f"{platform.processor() or platform.machine()} threads={torch.get_num_threads()}"
    # "fastest": figures cached by the earlier median method are measured again, not reused.
    return f"{platform.node()}|{device}|{what}|fastest"


def measure_bandwidth(device: str = "cpu", *, nbytes: int = BUFFER_BYTES) -> float:
    """Read bandwidth in bytes/s: the fastest of 5 timed sums over a ``nbytes`` float32 buffer.

    The fastest, not the median: a roofline is what the memory can do, and on a shared machine
    other work only ever slows a read down (a median taken while the machine was busy was
    cached here as a third of the idle figure, and kernels then "beat" their memory floor)."""
    import torch

    buffer = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    spread = time_call(lambda: buffer.sum(), repeats=5, warmup=1, device=device)
    return nbytes / min(spread.values)


def _plausible(value: object) -> bool:
    """A cached figure worth trusting: a finite number above 1 MB/s (a damaged or hand-edited
    cache file is measured again, never turned into a nonsense roofline)."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 1e6
    )


def memory_bandwidth(device: str = "cpu", *, refresh: bool = False) -> float:
    """The cached bandwidth of this machine's ``device`` in bytes/s; measured on first use."""
    path = _cache_file()
    key = machine_key(device)
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if not isinstance(cache, dict):
        cache = {}
    if refresh or not _plausible(cache.get(key)):
        cache[key] = measure_bandwidth(device)
        from llmlab.files import write_text

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text(path, json.dumps(cache, indent=1))
        except OSError:
            pass  # a read-only cache only costs a re-measurement next time
    return float(cache[key])
