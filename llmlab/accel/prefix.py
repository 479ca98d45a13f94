"""A prefix KV cache: keep the keys/values of the last prompt (+ answer) of a model, and let the
next prompt prefill only what differs. Chat turns share their whole history; prompts under one
system prompt share the system prompt (SmolLM2's template adds a default one to every prompt).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass
class PrefixCache:
    """The cached tokens and their KV for one model (and one weight variant: ``key``)."""

    key: str = ""
    token_ids: list[int] = field(default_factory=list)
    cache: Any = None  # transformers DynamicCache holding len(token_ids) positions
    #: Seconds of prefill per prompt token, measured on the last run that reused nothing;
    #: used to estimate the TTFT a reuse saved.
    prefill_s_per_token: float | None = None

    def take(self, prompt_ids: list[int], key: str, config: Any) -> tuple[Any, int]:
        """A cache to pass to generate() and how many prompt tokens it already covers.

        The stored cache is handed over (cropped to the shared prefix), not copied: generate()
        extends it in place and :meth:`store` takes it back; a failed run leaves it cleared.
        """
        from transformers import DynamicCache

        reused = 0
        cache = None
        if self.cache is not None and key == self.key:
            # Keep at least one prompt token to prefill: generate() needs logits for it.
            reused = min(common_prefix(self.token_ids, prompt_ids), len(prompt_ids) - 1)
            if reused > 0:
                cache = self.cache
                if cache.get_seq_length() > reused:
                    cache.crop(reused - cache.get_seq_length())  # a negative count removes
        self.clear()
        if cache is None:
            reused, cache = 0, DynamicCache(config=config)
        return cache, reused

    def store(self, key: str, token_ids: list[int], cache: Any) -> None:
        length = cache.get_seq_length()
        self.key, self.token_ids, self.cache = key, token_ids[:length], cache

    def clear(self) -> None:
        self.token_ids, self.cache = [], None

    @property
    def cached_tokens(self) -> int:
        return len(self.token_ids)
