"""A tiny random config for any causal-LM model type transformers ships.

transformers ships no small configs (its test suite's model testers are not installed), so each
type's default config is shrunk: every size field it has is set to the small shape of
``tiny:`` models (:data:`SHRINK`), recursively into sub-configs (text, vision, ...). A few families
need more than sizes to stay small and consistent; :data:`FAMILY_OVERRIDES` says what, beside the
shrinking, so the quirks live in one table. A type whose config still cannot be built small is
skipped with the reason (:class:`Unbuildable`).
"""

from __future__ import annotations

from typing import Any

from llmlab.errors import LabError

#: Size fields and the value they get (only fields the config already has are set).
SHRINK: dict[str, int] = {
    # widths
    "hidden_size": 64, "d_model": 64, "n_embd": 64, "n_embed": 64, "embed_dim": 64,
    "dim": 64, "hidden_dim": 64, "emb_dim": 64, "model_dim": 64, "word_embed_proj_dim": 64,
    "intermediate_size": 128, "ffn_dim": 128, "n_inner": 128, "intermediate_dim": 128,
    "ffn_hidden_size": 128, "mlp_dim": 128, "d_ff": 128, "inner_hidden_size": 128,
    "multiple_of": 16,
    # depth
    "num_hidden_layers": 4, "n_layer": 4, "n_layers": 4, "num_layers": 4,
    "decoder_layers": 4, "num_decoder_layers": 4,
    # heads
    "num_attention_heads": 4, "n_head": 4, "n_heads": 4, "num_heads": 4,
    "decoder_attention_heads": 4, "num_key_value_heads": 2, "n_kv_heads": 2,
    "num_kv_heads": 2, "head_dim": 16, "attention_head_size": 16, "kv_channels": 16,
    "global_head_dim": 16, "num_global_key_value_heads": 2, "rotary_dim": 8,
    "embedding_size": 64, "input_embedding_size": 64, "output_embedding_size": 64,
    # mixture of experts
    "num_experts": 4, "num_local_experts": 4, "n_routed_experts": 4, "moe_num_experts": 4,
    "num_experts_per_tok": 2, "moe_topk": 2, "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 64, "expert_intermediate_size": 32, "n_group": 1,
    "topk_group": 1, "moe_k": 2, "num_shared_experts": 1, "n_shared_experts": 1,
    # multi-head latent attention (DeepSeek-style)
    "q_lora_rank": 32, "kv_lora_rank": 16, "qk_rope_head_dim": 16, "qk_nope_head_dim": 16,
    "v_head_dim": 16, "qk_head_dim": 16,
    # state-space / linear attention
    "state_size": 8, "ssm_state_size": 8, "mamba_d_state": 8, "mamba_n_heads": 8,
    "mamba_d_head": 16, "mamba_head_dim": 16, "linear_num_key_heads": 2,
    "linear_num_value_heads": 4, "linear_key_head_dim": 16, "linear_value_head_dim": 16,
    "time_step_rank": 8, "mamba_d_ssm": 64, "mamba_expand": 2,
    # vocab-adjacent and per-layer extras
    "hidden_size_per_layer_input": 16, "vocab_size_per_layer_input": 259,
    "max_position_embeddings": 2048, "n_positions": 2048, "n_ctx": 2048,
    "max_sequence_length": 2048, "seq_length": 2048,
}  # fmt: skip

#: Beside the sizes: what a family needs to stay small and keep its character (hybrids keep
#: an attention layer among 4, MoE keeps experts in the small depth).
FAMILY_OVERRIDES: dict[str, dict[str, Any]] = {
    "gpt_neo": {"attention_types": [[["global", "local"], 2]]},
    "mamba2": {"num_heads": 8},
    "reformer": {"is_decoder": True, "axial_pos_embds_dim": [32, 32],
                 "axial_pos_shape": [32, 64]},
    "lfm2_moe": {"layer_types": ["conv", "full_attention", "conv", "full_attention"]},
    "jamba": {"attn_layer_period": 2, "attn_layer_offset": 1, "expert_layer_period": 2,
              "expert_layer_offset": 1, "mamba_dt_rank": 8},
    "zamba": {"mamba_dt_rank": 8, "attn_layer_period": 2, "attn_layer_offset": 1},
    # Granite-4 hybrid and Bamba default to Mamba layers only; keep attention in 2 of 4.
    "granitemoehybrid": {"layer_types": ["linear_attention", "full_attention"] * 2},
    "bamba": {"attn_layer_indices": [1, 3]},
}  # fmt: skip

#: Size caps beyond which a build is not "tiny" (the matrix skips it with the reason).
MAX_PARAMETERS = 30_000_000


class Unbuildable(LabError):
    """This model type's config cannot be built small; the message says why."""


def _tokens() -> dict[str, int]:
    from llmlab.models.tiny import special_token_ids

    return special_token_ids()


#: Sizes a default may leave unset (None) that the model then derives from bigger fields.
UNSET_SIZES = ("head_dim", "num_key_value_heads", "num_experts_per_tok")
#: Per-layer layouts: lists with one entry per layer, or lists of layer indices.
PER_LAYER = ("layer_types", "layers_block_type", "attention_layers")
LAYER_INDICES = ("mlp_only_layers", "full_attn_idxs", "attn_layer_indices", "no_rope_layers")


def _fewer_layers(kinds: list[Any], n: int) -> list[Any]:
    """The first ``n`` entries of a per-layer layout, keeping every kind it had (a hybrid
    keeps an attention layer; a model with sliding and global layers keeps both)."""
    out = list(kinds[:n])
    missing = [k for k in dict.fromkeys(kinds) if k not in out]
    for j, kind in enumerate(missing[:n]):
        out[n - 1 - j] = kind
    return out


def _shrunk(values: dict[str, Any], top: bool) -> dict[str, Any]:
    """The overrides that make one config (dict form) small; sub-configs recursively."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and any(k in value for k in SHRINK):
            out[key] = {**value, **_shrunk(value, top=False)}
        elif key in SHRINK and isinstance(value, int) and not isinstance(value, bool):
            out[key] = SHRINK[key] if value > SHRINK[key] or key.startswith("max") else value
        elif key in UNSET_SIZES and value is None:
            out[key] = SHRINK[key]
    if "vocab_size" in values:
        out.update(_tokens())
    if "unpadded_vocab_size" in values:
        out["unpadded_vocab_size"] = _tokens()["vocab_size"]
    if "kv_lora_rank" in values and "num_key_value_heads" in values:
        # Latent attention expands its compressed KV to every head: no grouping.
        out["num_key_value_heads"] = out.get("num_attention_heads", SHRINK["num_attention_heads"])
    depth = next((out[k] for k in ("num_hidden_layers", "n_layer", "num_layers") if k in out), 0)
    if depth:
        for key in PER_LAYER:
            if isinstance(values.get(key), list) and len(values[key]) > depth:
                out[key] = _fewer_layers(values[key], depth)
        for key in LAYER_INDICES:
            if isinstance(values.get(key), list) and values[key]:
                kept = [i for i in values[key] if isinstance(i, int) and i < depth]
                out[key] = kept or [depth - 1]
        if isinstance(values.get("per_layer_config"), dict):
            out["per_layer_config"] = {
                k: v for k, v in values["per_layer_config"].items() if int(k) < depth
            }
    return out


def tiny_config(model_type: str) -> Any:
    """A small config of ``model_type`` with the byte tokenizer's vocabulary (259 tokens)."""
    from transformers import AutoConfig

    try:
        default = AutoConfig.for_model(model_type)
    except Exception as err:  # noqa: BLE001 - any failure of a foreign config is a skip reason
        raise Unbuildable(f"its default config does not build: {_first_line(err)}") from None
    overrides = _shrunk(default.to_dict(), top=True)
    overrides.update(FAMILY_OVERRIDES.get(model_type, {}))
    try:
        config = AutoConfig.for_model(model_type, **overrides)
    except Exception as err:  # noqa: BLE001
        raise Unbuildable(f"no small config: {_first_line(err)}") from None
    return config


def build(model_type: str, seed: int = 0) -> tuple[Any, Any]:
    """A random model of ``model_type`` (seeded) and the byte-level tiny tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    from llmlab.models.tiny import tiny_tokenizer

    config = tiny_config(model_type)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(config)
    except Exception as err:  # noqa: BLE001
        raise Unbuildable(f"the small model does not build: {_first_line(err)}") from None
    n = sum(p.numel() for p in model.parameters())
    if n > MAX_PARAMETERS:
        raise Unbuildable(f"{n / 1e6:.0f} M parameters even when shrunk (fixed sizes)")
    return model.eval(), tiny_tokenizer()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return f"{type(err).__name__}: {line[:160]}"
