"""What a configuration costs: memory, bytes moved per token, dollars, share of the roofline."""

from __future__ import annotations

# Peak memory over a block is a device reading (generation records it too): llmlab.devices.
from llmlab.devices import MemoryReading, PeakMemory  # noqa: F401
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


def roofline_fraction(bytes_per_token: float, bandwidth_bytes_s: float, tpot_s: float) -> float:
    """Share of the memory-bandwidth roofline reached: the time the bytes read per token need at
    the measured bandwidth over the time a token actually took. Speculative decoding can pass
    1.0, since one pass over the weights then yields several tokens."""
    if tpot_s <= 0 or bandwidth_bytes_s <= 0:
        raise LabError("roofline needs a positive time per token and bandwidth")
    return bytes_per_token / bandwidth_bytes_s / tpot_s


def bytes_per_value(dtype_name: str) -> int:
    return {"float32": 4, "bfloat16": 2, "float16": 2, "int8": 1}.get(dtype_name, 4)
