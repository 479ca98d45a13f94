"""Tiny random mixture-of-experts models: one per MoE family transformers ships.

Each keeps its family's routing rule and quirks (shared experts, dense layers between sparse
ones, grouped sigmoid routing) at a size that builds in milliseconds. Their routing is untrained:
they exist to exercise capture code, not to show what experts learn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmlab.models.tiny import SMALL, special_token_ids, tiny_config

if TYPE_CHECKING:
    from transformers import PretrainedConfig

# Experts are small; 4 layers as in the dense tiny models.
MOE_SMALL: dict[str, Any] = {**SMALL, "intermediate_size": 32}


@tiny_config("mixtral")
def _mixtral() -> PretrainedConfig:
    from transformers import MixtralConfig

    return MixtralConfig(
        **MOE_SMALL, num_local_experts=8, num_experts_per_tok=2, **special_token_ids()
    )


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
        **special_token_ids(),
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
        **special_token_ids(),
    )


@tiny_config("olmoe")
def _olmoe() -> PretrainedConfig:
    from transformers import OlmoeConfig

    return OlmoeConfig(**MOE_SMALL, num_experts=16, num_experts_per_tok=4, **special_token_ids())


@tiny_config("granitemoe")
def _granitemoe() -> PretrainedConfig:
    from transformers import GraniteMoeConfig

    return GraniteMoeConfig(
        **MOE_SMALL, num_local_experts=8, num_experts_per_tok=2, **special_token_ids()
    )


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
        **special_token_ids(),
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
        **special_token_ids(),
    )


# The same small routing shape for every other MoE family: each config class takes the keys it
# knows (their names differ by family) and ignores the rest.
_GENERIC: dict[str, Any] = dict(
    moe_intermediate_size=32,
    expert_intermediate_size=32,
    shared_expert_intermediate_size=64,
    num_experts=8,
    num_local_experts=8,
    n_routed_experts=8,
    num_experts_per_tok=2,
    moe_topk=2,
    head_dim=16,
    kv_lora_rank=16,
    q_lora_rank=32,
    qk_rope_head_dim=8,
    qk_nope_head_dim=8,
    v_head_dim=16,
    n_group=4,
    topk_group=2,
    n_shared_experts=1,
    first_k_dense_replace=1,
)

# Per family: what the shared shape above does not cover (extra or overriding keys).
_FAMILY_EXTRAS: dict[str, dict[str, Any]] = {
    "llama4_text": dict(
        intermediate_size=32, intermediate_size_mlp=64, interleave_moe_layer_step=1
    ),
    "jetmoe": dict(kv_channels=16, num_key_value_heads=4),
    "qwen3_next": dict(
        decoder_sparse_step=1, layer_types=["linear_attention", "full_attention"] * 2
    ),
    "granitemoeshared": dict(num_local_experts=8),
    "granitemoehybrid": dict(
        layer_types=["mamba", "attention"] * 2,
        mamba_n_heads=8,
        mamba_d_head=16,
        mamba_d_state=16,
        mamba_n_groups=1,
        mamba_chunk_size=16,
    ),
    "deepseek_v2": dict(topk_method="group_limited_greedy", num_key_value_heads=4),
    "phimoe": dict(),
    "minimax": dict(layer_types=["full_attention"] * 4, block_size=16),
    "hunyuan_v1_moe": dict(num_shared_expert=1),
    "ernie4_5_moe": dict(
        moe_layer_start_index=1, moe_num_shared_experts=1, moe_num_experts=8, moe_k=2
    ),
    "glm4_moe": dict(),
    "dots1": dict(),
    "flex_olmo": dict(),
    "longcat_flash": dict(
        zero_expert_num=2,
        expert_ffn_hidden_size=32,
        ffn_hidden_size=64,
        num_layers=2,
        head_dim=8,
        num_key_value_heads=4,
    ),
    "dbrx": dict(),
}


def _generic(model_type: str) -> PretrainedConfig:
    import inspect

    from transformers import CONFIG_MAPPING

    cls = CONFIG_MAPPING[model_type]
    known: set[str] = set()
    for klass in cls.__mro__:
        known |= set(getattr(klass, "__annotations__", {}))
        known |= set(inspect.signature(klass.__init__).parameters)
    wanted = {**MOE_SMALL, **_GENERIC, **special_token_ids(), **_FAMILY_EXTRAS.get(model_type, {})}
    if model_type == "dbrx":  # DBRX nests attention and experts in sub-configs
        wanted = dict(
            d_model=64,
            n_heads=4,
            n_layers=4,
            max_seq_len=2048,
            **special_token_ids(),
            attn_config=dict(kv_n_heads=2, clip_qkv=8.0),
            ffn_config=dict(ffn_hidden_size=32, moe_num_experts=8, moe_top_k=2),
        )
    extras = _FAMILY_EXTRAS.get(model_type, {})
    config = cls(**{k: v for k, v in wanted.items() if k in known or k in extras})
    if model_type == "dbrx":
        # transformers 5.24's DbrxAttention reads attn_config.rope_theta, which the attention
        # sub-config no longer declares (rope settings moved to rope_parameters).
        theta = (config.rope_parameters or {}).get("rope_theta", 500000.0)
        object.__setattr__(config.attn_config, "rope_theta", theta)
    return config


# Families the shared shape above builds as is: Nemotron-H (hybrid: Mamba, attention and MoE
# layers) and newer families with no adapter entry, whose blocks capture finds by the usual
# names (the shared router/experts pattern).
_PATTERN_FAMILIES = [
    "nemotron_h",
    "afmoe",
    "aria_text",
    "axk1",
    "beam",
    "cohere2_moe",
    "deepseek_v4",
    "exaone_moe",
    "glm4_moe_lite",
    "granitemoe_swa",
    "hy_v3",
    "hy_v4",
    "inkling_text",
    "kolibri1",
    "laguna",
    "lara_mini",
    "mellum",
    "mimo_v2_flash",
    "minimax_m2",
    "qwen3_5_moe_text",
    "solar_open",
]

for _family in [*_FAMILY_EXTRAS, *_PATTERN_FAMILIES]:
    tiny_config(_family.removesuffix("_text"))(lambda family=_family: _generic(family))

#: Every MoE family with a tiny model here (``tiny:NAME``).
MOE_FAMILIES = [
    "mixtral",
    "qwen2_moe",
    "qwen3_moe",
    "olmoe",
    "granitemoe",
    "deepseek_v3",
    "gpt_oss",
    *(f.removesuffix("_text") for f in [*_FAMILY_EXTRAS, *_PATTERN_FAMILIES]),
]


def olmoe_scale_config(
    num_hidden_layers: int = 16, num_experts: int = 64, top_k: int = 8
) -> PretrainedConfig:
    """OLMoE's routing shape (16 layers, 64 experts, top-8) with tiny widths: for scale tests."""
    from transformers import OlmoeConfig

    return OlmoeConfig(
        **{**MOE_SMALL, "num_hidden_layers": num_hidden_layers, "max_position_embeddings": 4096},
        num_experts=num_experts,
        num_experts_per_tok=top_k,
        **special_token_ids(),
    )
