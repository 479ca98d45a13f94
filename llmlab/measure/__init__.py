"""Honest measurement: latency with spread, quality against a reference, and cost.

- :mod:`~llmlab.measure.stats`: :class:`Spread`, a figure with its samples and spread;
- :mod:`~llmlab.measure.latency`: warm-up + repetitions + CUDA sync; TTFT/TPOT/tok/s summaries;
- :mod:`~llmlab.measure.quality`: teacher-forced KL, top-1 agreement, greedy match, perplexity;
- :mod:`~llmlab.measure.cost`: peak memory, weight and KV bytes, $ per 1M tokens, roofline;
- :mod:`~llmlab.measure.bandwidth`: memory bandwidth, measured once per machine and cached.
"""

from llmlab.measure.bandwidth import memory_bandwidth
from llmlab.measure.cost import (
    DEFAULT_PRICES_USD_PER_HOUR,
    PeakMemory,
    kv_cache_bytes,
    model_weight_bytes,
    roofline_fraction,
    usd_per_million_tokens,
)
from llmlab.measure.latency import LatencySummary, summarize_generations, time_call
from llmlab.measure.quality import (
    TokenAgreement,
    compare_logprobs,
    continuation_logprobs,
    default_text,
    greedy_match,
    perplexity,
)
from llmlab.measure.stats import Spread

__all__ = [
    "DEFAULT_PRICES_USD_PER_HOUR",
    "LatencySummary",
    "PeakMemory",
    "Spread",
    "TokenAgreement",
    "compare_logprobs",
    "continuation_logprobs",
    "default_text",
    "greedy_match",
    "kv_cache_bytes",
    "memory_bandwidth",
    "model_weight_bytes",
    "perplexity",
    "roofline_fraction",
    "summarize_generations",
    "time_call",
    "usd_per_million_tokens",
]
