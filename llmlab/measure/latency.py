"""The latency harness: warm-up, repetitions, device synchronisation, median with spread.

Two entry points share the same discipline:

- :func:`time_call` times any callable (warm-up calls first, then ``repeats`` timed calls,
  with ``torch.cuda.synchronize`` around each on CUDA, since kernels run asynchronously);
- :func:`warm_up_once` runs an untimed warm-up the first time a (model, configuration) is used
  in this session, for views that time single runs (the accelerations panel); generations warm
  up with :func:`warmup_settings` (a short generation, as sweeps do);
- :func:`summarize_generations` turns the :class:`GenerationResult` of repeated generations into
  TTFT / TPOT / decode tok/s / end-to-end figures, each a :class:`Spread`.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from llmlab.devices import synchronize
from llmlab.errors import LabError
from llmlab.measure.stats import Spread

if TYPE_CHECKING:
    from llmlab.generation.settings import GenerationSettings

MIN_REPEATS = 3
#: New tokens of a warm-up generation: enough to run prefill and several decode steps (first
#: allocations, lazy kernel set-up), short enough to cost little.
WARMUP_TOKENS = 8


def check_repeats(repeats: int, warmup: int) -> None:
    if repeats < MIN_REPEATS:
        raise LabError(f"use at least {MIN_REPEATS} repetitions for a median with spread")
    if warmup < 0:
        raise LabError(f"warm-up runs must be >= 0, got {warmup}")


def time_call(
    fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1, device: str = "cpu"
) -> Spread:
    """Seconds per call of ``fn``: ``warmup`` untimed calls, then ``repeats`` timed ones."""
    check_repeats(repeats, warmup)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return Spread(times)


def warmup_settings(settings: GenerationSettings) -> GenerationSettings:
    """``settings`` for an untimed warm-up generation: the same, with at most WARMUP_TOKENS."""
    return replace(settings, max_new_tokens=min(WARMUP_TOKENS, settings.max_new_tokens))


# Per model module (weakly, so a dropped model forgets): the configuration keys already warm.
_warm: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def warm_up_once(
    owner: Any, key: Hashable, fn: Callable[[], Any], device: str = "cpu"
) -> float | None:
    """Call ``fn`` untimed-as-latency if ``key`` has not been warmed up for ``owner`` (a model
    module) in this session; return the seconds it took, or None when already warm.

    The first forward pass of a model or configuration pays one-off costs (allocations, lazy
    kernel initialisation, a quantized kernel's first dispatch); a single timed run right after
    loading would count them as latency.
    """
    seen = _warm.setdefault(owner, set())
    if key in seen:
        return None
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    seen.add(key)  # only once it succeeded: a failed warm-up is retried next time
    return time.perf_counter() - start


@dataclass
class LatencySummary:
    """Latency of repeated generations, each figure with its spread.

    One sample per run for ``ttft_s``, ``tpot_s`` (time per output token after the first:
    ``(end - first token) / (tokens - 1)``, the usual serving definition, which stays honest
    under speculative decoding where several tokens arrive at once), ``decode_tps``, ``e2e_s``
    and ``s_per_token`` (end-to-end seconds per output token: what a bill is based on).
    ``itl_s`` holds every gap between consecutive tokens of all runs (inter-token latency;
    bursts of accepted draft tokens show up as zero gaps).
    """

    ttft_s: Spread
    tpot_s: Spread
    itl_s: Spread
    decode_tps: Spread
    e2e_s: Spread
    s_per_token: Spread
    new_tokens: Spread
    runs: int

    def to_dict(self) -> dict[str, Any]:
        return {
            name: getattr(self, name).to_dict()
            for name in (
                "ttft_s",
                "tpot_s",
                "itl_s",
                "decode_tps",
                "e2e_s",
                "s_per_token",
                "new_tokens",
            )
        } | {"runs": self.runs}


def summarize_generations(results: Sequence[Any]) -> LatencySummary:
    """Summarize :class:`~llmlab.generation.result.GenerationResult` objects of timed runs."""
    gaps: list[float] = []
    for r in results:
        gaps.extend(r.stats.inter_token_s)
    return LatencySummary(
        ttft_s=Spread.of(r.stats.ttft_s for r in results),
        tpot_s=Spread.of(r.stats.tpot_s for r in results),
        itl_s=Spread(gaps),
        decode_tps=Spread.of(r.stats.decode_tokens_per_s for r in results),
        e2e_s=Spread.of(r.stats.total_s for r in results),
        s_per_token=Spread.of(
            r.stats.total_s / r.stats.new_tokens for r in results if r.stats.new_tokens
        ),
        new_tokens=Spread.of(r.stats.new_tokens for r in results),
        runs=len(results),
    )
