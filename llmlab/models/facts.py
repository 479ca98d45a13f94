"""One place for the facts of a model that views, tables and estimates show: layers, heads, KV
heads, experts and weight bytes.

Configs name these differently by family (``num_hidden_layers``/``n_layer``,
``num_local_experts``/``num_experts``/``n_routed_experts``); :func:`facts_of` reads them once,
from the text config of a multimodal model. :func:`weight_bytes` is the one weight counter:
``%llm models``, the accelerations panel, the tradeoff sweep and the memory estimates all use
it, so they agree about the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Config attributes that hold the number of routed experts (names differ by family).
EXPERT_COUNT_NAMES = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
#: Config attributes that hold how many experts each token is routed to.
EXPERTS_PER_TOKEN_NAMES = ("num_experts_per_tok", "moe_top_k", "top_k")


def text_config(config: Any) -> Any:
    """The decoder's config (a multimodal model keeps it apart from the vision tower's)."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _first(config: Any, names: tuple[str, ...]) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return int(value)
    return None


@dataclass(frozen=True)
class ModelFacts:
    """What a model is, as its config and weights say (``None``: the config does not say)."""

    layers: int | None
    heads: int | None
    kv_heads: int | None  # fewer than ``heads`` under grouped-query attention
    head_dim: int | None
    hidden: int | None
    vocab: int | None
    experts: int | None  # routed experts per MoE layer; None for a dense model
    experts_per_token: int | None
    weight_bytes: int | None  # None when no weights are at hand (a served model)


def config_facts(config: Any, weights: int | None = None) -> ModelFacts:
    """The facts a config gives (``weights``: the weight bytes, counted elsewhere)."""
    text = text_config(config)
    heads = _first(text, ("num_attention_heads", "n_head"))
    hidden = _first(text, ("hidden_size", "n_embd", "d_model"))
    head_dim = _first(text, ("head_dim",)) or (hidden // heads if hidden and heads else None)
    ffn = getattr(text, "ffn_config", None)  # DBRX keeps its experts in a sub-config
    experts = _first(text, EXPERT_COUNT_NAMES) or (
        _first(ffn, ("moe_num_experts",)) if ffn is not None else None
    )
    per_token = None
    if experts:
        per_token = _first(text, EXPERTS_PER_TOKEN_NAMES) or (
            _first(ffn, ("moe_top_k",)) if ffn is not None else None
        )
    return ModelFacts(
        layers=_first(text, ("num_hidden_layers", "n_layer", "num_layers")),
        heads=heads,
        kv_heads=_first(text, ("num_key_value_heads", "num_kv_heads")) or heads,
        head_dim=head_dim,
        hidden=hidden,
        vocab=_first(text, ("vocab_size",)),
        experts=experts,
        experts_per_token=per_token,
        weight_bytes=weights,
    )


def facts_of(model: Any) -> ModelFacts:
    """The facts of a transformers model (config and counted weights)."""
    return config_facts(model.config, weight_bytes(model))


def weight_bytes(model: Any) -> int:
    """Bytes of a model's weights: parameters and buffers counted once per storage (tied
    embeddings are not counted twice), disk-offloaded weights (meta tensors, no storage) at
    their size, and quantized modules' packed weights, which ``parameters()`` misses (torch.ao
    dynamic int8 keeps them in ``_packed_params``)."""
    import torch

    seen: dict[Any, int] = {}

    def size(t: torch.Tensor) -> int:
        if t.is_quantized:  # the payload plus a scale and a zero point per output channel
            return t.numel() * t.element_size() + 8 * t.shape[0]
        return t.numel() * t.element_size()

    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_meta or t.is_quantized:
            # No storage to deduplicate (offloaded to disk, or quantized): count its size.
            seen[("tensor", id(t))] = size(t)
        else:
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    for m in model.modules():
        packed = getattr(m, "_packed_params", None)
        if packed is not None and hasattr(packed, "_weight_bias"):
            # _weight_bias() unpacks fresh tensors on every call: keyed on the module, since a
            # freed temporary's id can come back for the next module's.
            w, b = packed._weight_bias()
            if getattr(packed, "dtype", None) == torch.float16:
                # fbgemm keeps float16 weights packed; _weight_bias() unpacks them to float32.
                seen[("packed", id(m))] = w.numel() * 2
            else:
                seen[("packed", id(m))] = size(w)
            if b is not None:
                seen[("packed bias", id(m))] = size(b)
    return sum(seen.values())


def kv_cache_bytes(config: Any, tokens: int, bytes_per_value: int) -> int:
    """Bytes of a full K and V cache for ``tokens`` positions: 2 x layers x KV heads x head dim."""
    text = text_config(config)
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return 2 * text.num_hidden_layers * kv_heads * head_dim * tokens * bytes_per_value
