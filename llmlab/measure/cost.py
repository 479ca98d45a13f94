"""What a configuration costs: memory, bytes moved per token, dollars, share of the roofline."""

from __future__ import annotations

import os
import resource
import sys
import threading
from dataclasses import dataclass
from typing import Any

from llmlab.errors import LabError

# One weight counter and one KV-size formula for every view, kept in llmlab.models.facts.
from llmlab.models.facts import kv_cache_bytes  # noqa: F401 (part of this module's API)
from llmlab.models.facts import weight_bytes as model_weight_bytes  # noqa: F401

#: Illustrative on-demand prices in US$ per device-hour; pass your own (``prices=``,
#: ``--price cpu=0.05``). CPU: a small 2-vCPU cloud VM; CUDA: one H100 at a cloud list price.
DEFAULT_PRICES_USD_PER_HOUR: dict[str, float] = {"cpu": 0.10, "cuda": 2.50}


def price_per_hour(device: str, prices: dict[str, float] | None = None) -> float:
    from llmlab.devices import device_type

    table = DEFAULT_PRICES_USD_PER_HOUR | (prices or {})
    if device not in table:
        device = device_type(device)  # cuda:1 is billed as a cuda device unless priced itself
    if device not in table:
        raise LabError(f"no hourly price for device {device!r}; pass e.g. {device}=1.0")
    return table[device]


def usd_per_million_tokens(seconds_per_token: float, usd_per_hour: float) -> float:
    """Dollars for a million output tokens at this speed, with the device billed by the hour."""
    return usd_per_hour / 3600.0 * seconds_per_token * 1e6


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


def roofline_fraction(bytes_per_token: float, bandwidth_bytes_s: float, tpot_s: float) -> float:
    """Share of the memory-bandwidth roofline reached: the time the bytes read per token need at
    the measured bandwidth over the time a token actually took. Speculative decoding can pass
    1.0, since one pass over the weights then yields several tokens."""
    if tpot_s <= 0 or bandwidth_bytes_s <= 0:
        raise LabError("roofline needs a positive time per token and bandwidth")
    return bytes_per_token / bandwidth_bytes_s / tpot_s


def bytes_per_value(dtype_name: str) -> int:
    return {"float32": 4, "bfloat16": 2, "float16": 2, "int8": 1}.get(dtype_name, 4)
