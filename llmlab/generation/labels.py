"""Words for the figures a generation reports beside its text.

``GenerationStats.extra`` keeps short machine keys (``acceptance_rate``, ``kl_to_base_nats``:
an API that code and tests read); what a person sees is built here, once, for the footers,
the accelerations panel (live and offline) and reports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _percent(value: Any) -> str:
    return f"{100 * float(value):.0f}%"


def _range(value: Any) -> str:
    lo, hi = value
    return f"{lo:g}–{hi:g}"


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


#: key -> (label, how the value is written). Keys not listed are shown as they come.
STAT_LABELS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "accel": ("acceleration", _plain),
    "acceptance_rate": ("acceptance rate", _percent),
    "drafted_tokens": ("drafted tokens", _plain),
    "tokens_per_target_pass": ("tokens / target pass", _plain),
    "target_passes": ("target passes", _plain),
    "prefix_reused_tokens": ("prefix tokens reused", _plain),
    "ttft_saved_ms_est": ("TTFT saved ≈ ms", _plain),
    "weight_mb": ("weights MB", _plain),
    "weight_mb_before": ("weights MB before", _plain),
    "warmup_s": ("warm-up s (not timed)", _plain),
    "build_s": ("copy built in s (not timed)", _plain),
    "first_call_compile_s": ("compile s (first call, not timed)", _plain),
    "kl_to_base_nats": ("mean KL to loaded weights, nats", _plain),
    "kl_to_base_ci95": ("95% CI of that mean KL", _range),
    "kl_positions": ("KL over answer tokens (n)", _plain),
    "top1_to_base": ("top-1 same as loaded weights", _percent),
    "cold": ("cold:", _plain),
}


def stat_label(key: str) -> str:
    return STAT_LABELS.get(key, (key.replace("_", " "), _plain))[0]


def stat_items(extra: dict[str, Any], skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """``[(label, value text), ...]`` for the figures in ``extra``, in their order."""
    items = []
    for key, value in extra.items():
        if key in skip:
            continue
        label, write = STAT_LABELS.get(key, (key.replace("_", " "), _plain))
        items.append((label, write(value)))
    return items
