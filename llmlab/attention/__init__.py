"""Attention capture and views: every layer's and head's weights, per-head statistics,
compact payloads for long inputs, and differences between two variants.

::

    from llmlab.attention import attention, compare
    att = attention(lm, "The animal didn't cross the street because it was too tired.")
    att.to_pandas()                      # per-head entropy, sink mass, previous-token, distance
    diff = compare(lm, "quant=int8", "...")
    diff.ranking().head()                # the heads that changed most
"""

from llmlab.attention.capture import MAX_TOKENS, eager_attention, hook_count, parse_layers
from llmlab.attention.engine import attention, compare, compare_results
from llmlab.attention.result import AttentionComparison, AttentionResult

__all__ = [
    "MAX_TOKENS",
    "AttentionComparison",
    "AttentionResult",
    "attention",
    "compare",
    "compare_results",
    "eager_attention",
    "hook_count",
    "parse_layers",
]
