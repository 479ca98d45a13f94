"""Inference accelerations as named, composable toggles.

::

    from llmlab.accel import ACCELERATIONS, parse_config, variant, generate_accelerated
    cfg = parse_config("spec=prompt-lookup,quant=int8")
    cfg.output_preserving, cfg.label
    with variant(lm, cfg) as vlm: ...              # load-time changes on a copy; lm unchanged
    res = generate_accelerated(lm, prompt, settings, cfg)

Importing this package is cheap (torch loads on first use).
"""

from llmlab.accel.prefix import PrefixCache
from llmlab.accel.registry import (
    ACCELERATIONS,
    PRESETS,
    AccelConfig,
    Acceleration,
    check,
    parse_config,
    table,
)
from llmlab.accel.run import generate_accelerated, prefix_cache_for
from llmlab.accel.spec_trace import DraftStep, DraftTrace
from llmlab.accel.variant import forget_copies, variant

__all__ = [
    "ACCELERATIONS",
    "PRESETS",
    "AccelConfig",
    "Acceleration",
    "DraftStep",
    "DraftTrace",
    "PrefixCache",
    "check",
    "forget_copies",
    "generate_accelerated",
    "parse_config",
    "prefix_cache_for",
    "table",
    "variant",
]
