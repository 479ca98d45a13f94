"""The corrupted run's prefix, reused by patching scans.

Patching the residual stream (or a MoE block's output) at position ``p`` changes nothing at
the positions before ``p``, at any layer: attention is causal and every other operation is
per position. So a patching pass for position ``p`` runs only the tokens ``p..T−1`` on top of
the corrupted run's keys and values for ``0..p−1``, computed once.

Only a plain per-layer key/value cache can be reused that way. :func:`reusable` decides it in
one place: the family must pass the check speculative decoding makes before it crops a cache
back (``llmlab.accel.registry``: no recurrent state, a standard cache, cropping works), and
transformers' cache for it must hold one plain ``DynamicLayer`` per decoder layer (no sliding
windows, no indexer or linear-attention layers), the full text's keys in each. Everything else
runs the full sequence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from llmlab.interventions.edits import forward

if TYPE_CHECKING:
    from llmlab.models.loaded import LoadedModel


class _ReadOnlyPrefix(DynamicLayer):
    """One layer's prefix keys/values (1 row), put in front of the pass's own: expanded to
    however many rows the layer sees (the batch grows with depth), and never stored, so
    passes share one prefix without copying it and hold only one layer's keys at a time.
    (transformers' layers append what they see; a scan's pass must not change the prefix.)"""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.keys, self.values = keys, values
        self.device = keys.device
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        rows = key_states.shape[0]
        keys = self.keys.expand(rows, *self.keys.shape[1:])
        values = self.values.expand(rows, *self.values.shape[1:])
        return torch.cat([keys, key_states], dim=-2), torch.cat([values, value_states], dim=-2)


class Prefix:
    """The corrupted run's keys and values, per layer ((1, kv heads, T, head dim) each)."""

    def __init__(self, layers: list[tuple[torch.Tensor, torch.Tensor]]):
        self.layers = layers

    def cache(self, p: int) -> DynamicCache | None:
        """A cache holding positions ``0..p−1`` for a pass over the tokens from ``p``."""
        if p == 0:
            return None
        cache = DynamicCache()
        cache.layer_class_to_replicate = None
        cache.layers = [_ReadOnlyPrefix(k[:, :, :p], v[:, :, :p]) for k, v in self.layers]
        return cache


def reusable(lm: LoadedModel) -> bool:
    """Whether the family's cache is a plain per-layer KV cache transformers can crop."""
    # The check speculative decoding makes before it crops a cache back: one rule for "this
    # family's cache can be cut at a position", not a second family list.
    from llmlab.accel.registry import can_roll_back_cache

    ok, _ = can_roll_back_cache(lm)
    return ok


def record(lm: LoadedModel, ids: torch.Tensor, n_layers: int) -> Prefix | None:
    """The keys and values of ``ids`` (one row) at every layer, where :func:`reusable`;
    else None (patching passes then run the full sequence)."""
    if not reusable(lm):
        return None
    try:
        cache = DynamicCache(config=lm.model.config)
    except Exception:  # noqa: BLE001 - a cache the generic class cannot build: full sequence
        return None
    forward(lm, ids, cache=cache)
    n = int(ids.shape[1])
    layers = getattr(cache, "layers", [])
    plain = len(layers) == n_layers and all(
        type(layer) is DynamicLayer
        and layer.is_initialized
        and layer.keys.dim() == 4
        and layer.keys.shape[0] == 1
        and layer.keys.shape[-2] == n
        for layer in layers
    )
    return Prefix([(layer.keys, layer.values) for layer in layers]) if plain else None
