"""What differs between model families for an attention capture: one small table.

Most families call a function looked up by name in transformers' attention interface, so one
registered capturing function serves them all (``capture.py``). The table below holds only
what cannot be read from the model itself:

- families whose attention modules compute their weights inside the module and never call
  the interface (``interface=False``): they are captured through ``output_attentions`` under
  the eager kernel instead;
- what a hybrid model's layers without attention weights are, in words (their config says
  ``linear_attention`` for Gated DeltaNet and Mamba alike, ``conv`` for LFM2's convolutions);
- recurrent families whose config names no layer types (RWKV): what every layer is.

Layer stacks (encoder self-attention, decoder masked self-attention, cross-attention) are told
apart by the attention module's name, with the patterns in :data:`CROSS_NAMES`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Adapter:
    interface: bool = True  # calls transformers' attention interface
    kinds: dict[str, str] = field(default_factory=dict)  # config layer type -> in words
    every_layer: str = ""  # a recurrent family without ``layer_types``: what all layers are


#: Layer types (``config.layer_types``) whose layers have no attention weights, in words.
NO_WEIGHTS = {
    "linear_attention": "linear attention",
    "conv": "convolution",
    "mamba": "Mamba",
    "mamba2": "Mamba-2",
    "mlp": "MLP only",
    "moe": "MoE MLP only",
}
#: Layer types with attention, in words.
ATTENTION_KINDS = {
    "full_attention": "attention",
    "attention": "attention",
    "sliding_attention": "sliding-window attention",
    "chunked_attention": "chunked attention",
    "hybrid": "attention",
}

_MAMBA = {"linear_attention": "Mamba"}
ADAPTERS: dict[str, Adapter] = {
    # Compute softmax(QKᵀ) (with ALiBi) inside the module, never through the interface.
    "falcon": Adapter(interface=False),
    "bloom": Adapter(interface=False),
    "mpt": Adapter(interface=False),
    # Hybrids: what their layers without attention are.
    "qwen3_next": Adapter(kinds={"linear_attention": "linear attention (Gated DeltaNet)"}),
    "lfm2": Adapter(kinds={"conv": "short convolution"}),
    "lfm2_moe": Adapter(kinds={"conv": "short convolution"}),
    "jamba": Adapter(kinds=_MAMBA),
    "bamba": Adapter(kinds={"linear_attention": "Mamba-2"}),
    "granitemoehybrid": Adapter(kinds={"linear_attention": "Mamba-2"}),
    "nemotron_h": Adapter(kinds={"linear_attention": "Mamba-2"}),
    # Recurrent: no attention anywhere (their configs call every layer linear_attention).
    "mamba": Adapter(kinds=_MAMBA),
    "falcon_mamba": Adapter(kinds=_MAMBA),
    "mamba2": Adapter(kinds={"linear_attention": "Mamba-2"}),
    # Recurrent, and no layer_types in the config to say so.
    "rwkv": Adapter(every_layer="RWKV time mixing (recurrent)"),
}

#: Attention module names that mark cross-attention (decoder queries, encoder keys).
CROSS_NAMES = re.compile(r"(encoder_attn|EncDecAttention|crossattention|cross_attn)", re.I)
_FIRST_INT = re.compile(r"\.(\d+)(?:\.|$)")

#: What each stack is, for titles and for which token list its queries and keys come from.
STACK_TITLES = {
    "self": "masked self-attention",
    "encoder": "encoder self-attention",
    "decoder": "decoder masked self-attention",
    "cross": "cross-attention (decoder → encoder)",
}
CAUSAL_STACKS = {"self", "decoder"}


def adapter(family: str) -> Adapter:
    return ADAPTERS.get(family, Adapter())


def is_encoder_decoder(config: Any) -> bool:
    return bool(getattr(config, "is_encoder_decoder", False))


def is_encoder_only(model: Any) -> bool:
    """An encoder without a decoder (BERT, RoBERTa, ...): bidirectional, cannot generate."""
    if is_encoder_decoder(model.config):
        return False
    can_generate = getattr(model, "can_generate", None)
    return not (can_generate() if callable(can_generate) else True)


def stack_of(module_name: str, encoder_only: bool, encoder_decoder: bool) -> str:
    """Which stack an attention module belongs to, from its dotted name."""
    if encoder_only:
        return "encoder"
    if not encoder_decoder:
        return "cross" if CROSS_NAMES.search(module_name) else "self"
    if CROSS_NAMES.search(module_name):
        return "cross"
    return "decoder" if "decoder" in module_name else "encoder"


def layer_of(module_name: str) -> int | None:
    """The layer index in an attention module's name: its first numeric component
    (``model.layers.7.self_attn``, ``transformer.h.3.attn``, ``decoder.block.1.layer.1...``)."""
    match = _FIRST_INT.search("." + module_name)
    return int(match.group(1)) if match else None


def stack_sizes(config: Any, encoder_only: bool) -> dict[str, int]:
    """How many layers each stack has, from the config."""
    text = config.get_text_config() if not is_encoder_decoder(config) else config

    def first(*names: str) -> int:
        for n in names:
            v = getattr(text, n, None)
            if isinstance(v, int) and v > 0:
                return v
        return 0

    if is_encoder_decoder(config):
        enc = first("encoder_layers", "num_layers", "num_hidden_layers")
        dec = first("decoder_layers", "num_decoder_layers", "num_layers", "num_hidden_layers")
        return {"encoder": enc, "decoder": dec, "cross": dec}
    n = first("num_hidden_layers", "n_layer", "num_layers")
    return {"encoder": n} if encoder_only else {"self": n}


def layer_kinds(config: Any, family: str, n_layers: int) -> list[tuple[str, bool]]:
    """Per layer of a decoder stack: (kind in words, has attention weights), from the config's
    ``layer_types`` (hybrids, sliding windows); plain attention where the config says nothing."""
    if adapter(family).every_layer:
        return [(adapter(family).every_layer, False)] * n_layers
    text = config.get_text_config()
    types = getattr(text, "layer_types", None)
    if not isinstance(types, (list, tuple)) or len(types) != n_layers:
        return [("attention", True)] * n_layers
    names = adapter(family).kinds
    out = []
    for t in types:
        if t in NO_WEIGHTS:
            out.append((names.get(t, NO_WEIGHTS[t]), False))
        else:
            out.append((names.get(t, ATTENTION_KINDS.get(t, str(t).replace("_", " "))), True))
    return out
