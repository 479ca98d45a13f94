"""Tiny random mixture-of-experts models: one per MoE family transformers ships.

Each keeps its family's routing rule and quirks (shared experts, dense layers between sparse
ones, grouped sigmoid routing) at a size that builds in milliseconds. Their routing is untrained:
they exist to exercise capture code, not to show what experts learn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmlab.models.tiny import SMALL, _ids, tiny_config

if TYPE_CHECKING:
    from transformers import PretrainedConfig

# Experts are small; 4 layers as in the dense tiny models.
MOE_SMALL: dict[str, Any] = {**SMALL, "intermediate_size": 32}


@tiny_config("mixtral")
def _mixtral() -> PretrainedConfig:
    from transformers import MixtralConfig

    return MixtralConfig(**MOE_SMALL, num_local_experts=8, num_experts_per_tok=2, **_ids())


@tiny_config("qwen2_moe")
def _qwen2_moe() -> PretrainedConfig:
    from transformers import Qwen2MoeConfig

    # Layer 0 stays dense (mlp_only_layers) so the true layer index differs from the MoE count.
    return Qwen2MoeConfig(
        **MOE_SMALL,
        num_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=32,
        shared_expert_intermediate_size=64,
        mlp_only_layers=[0],
        **_ids(),
    )


@tiny_config("qwen3_moe")
def _qwen3_moe() -> PretrainedConfig:
    from transformers import Qwen3MoeConfig

    return Qwen3MoeConfig(
        **MOE_SMALL,
        head_dim=16,
        num_experts=16,
        num_experts_per_tok=4,
        moe_intermediate_size=32,
        norm_topk_prob=True,
        mlp_only_layers=[2],
        **_ids(),
    )


@tiny_config("olmoe")
def _olmoe() -> PretrainedConfig:
    from transformers import OlmoeConfig

    return OlmoeConfig(**MOE_SMALL, num_experts=16, num_experts_per_tok=4, **_ids())


@tiny_config("granitemoe")
def _granitemoe() -> PretrainedConfig:
    from transformers import GraniteMoeConfig

    return GraniteMoeConfig(**MOE_SMALL, num_local_experts=8, num_experts_per_tok=2, **_ids())


@tiny_config("deepseek_v3")
def _deepseek_v3() -> PretrainedConfig:
    from transformers import DeepseekV3Config

    # 16 experts in 4 groups, 2 groups kept, top-4; the first layer is dense.
    return DeepseekV3Config(
        **{**MOE_SMALL, "num_key_value_heads": 4},
        moe_intermediate_size=32,
        n_routed_experts=16,
        num_experts_per_tok=4,
        n_group=4,
        topk_group=2,
        n_shared_experts=1,
        first_k_dense_replace=1,
        kv_lora_rank=16,
        q_lora_rank=32,
        qk_rope_head_dim=8,
        qk_nope_head_dim=8,
        v_head_dim=16,
        head_dim=8,
        **_ids(),
    )


@tiny_config("gpt_oss")
def _gpt_oss() -> PretrainedConfig:
    from transformers import GptOssConfig

    return GptOssConfig(
        **MOE_SMALL,
        head_dim=16,
        num_local_experts=8,
        num_experts_per_tok=2,
        sliding_window=64,
        layer_types=["sliding_attention", "full_attention"] * 2,
        # Plain RoPE: the default YaRN settings assume a 4k-token pre-training context.
        rope_parameters={"rope_type": "default", "rope_theta": 150000.0},
        **_ids(),
    )


def olmoe_scale_config(
    num_hidden_layers: int = 16, num_experts: int = 64, top_k: int = 8
) -> PretrainedConfig:
    """OLMoE's routing shape (16 layers, 64 experts, top-8) with tiny widths: for scale tests."""
    from transformers import OlmoeConfig

    return OlmoeConfig(
        **{**MOE_SMALL, "num_hidden_layers": num_hidden_layers, "max_position_embeddings": 4096},
        num_experts=num_experts,
        num_experts_per_tok=top_k,
        **_ids(),
    )
