"""Tiny random checkpoints of many families, saved to disk so tests load them by path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmlab.models.tiny import tiny_tokenizer

V = 259  # the byte-level tiny tokenizer's vocabulary
IDS = dict(vocab_size=V, bos_token_id=0, eos_token_id=2, pad_token_id=0)
DENSE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=512, **IDS)  # fmt: skip


def _cfg(name: str) -> Any:
    import transformers as t

    table = {
        "llama": lambda: t.LlamaConfig(**DENSE),
        "qwen2": lambda: t.Qwen2Config(**DENSE),
        "qwen3": lambda: t.Qwen3Config(**DENSE, head_dim=8),
        "mistral": lambda: t.MistralConfig(**DENSE, sliding_window=8),
        "gemma2": lambda: t.Gemma2Config(
            **DENSE,
            head_dim=8,
            sliding_window=8,
            attn_logit_softcapping=5.0,
            query_pre_attn_scalar=8,
        ),
        "gemma3": lambda: t.Gemma3TextConfig(
            **DENSE, head_dim=8, sliding_window=8, attn_logit_softcapping=5.0
        ),
        "phi": lambda: t.PhiConfig(**{**DENSE, "num_key_value_heads": 4}),
        "olmo": lambda: t.OlmoConfig(**DENSE),
        "gpt_oss": lambda: t.GptOssConfig(
            **DENSE, head_dim=8, num_local_experts=4, num_experts_per_tok=2, sliding_window=8
        ),
        "gpt2": lambda: t.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=512, **IDS),
        "gpt_neox": lambda: t.GPTNeoXConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=512,
            **IDS,
        ),
        "gptj": lambda: t.GPTJConfig(
            n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=512, **IDS
        ),
        "falcon": lambda: t.FalconConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, **IDS
        ),
        "bloom": lambda: t.BloomConfig(hidden_size=32, n_layer=2, n_head=4, **IDS),
        "jetmoe": lambda: t.JetMoeConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_key_value_heads=2,
            kv_channels=8,
            intermediate_size=64,
            num_local_experts=4,
            num_experts_per_tok=2,
            max_position_embeddings=512,
            **IDS,
        ),
        "qwen3_next": lambda: t.Qwen3NextConfig(
            **DENSE,
            head_dim=8,
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=16,
            shared_expert_intermediate_size=16,
            linear_num_value_heads=2,
            linear_num_key_heads=2,
            linear_key_head_dim=8,
            linear_value_head_dim=8,
            layer_types=["linear_attention", "full_attention"],
        ),
        "lfm2": lambda: t.Lfm2Config(
            **{**DENSE, "num_hidden_layers": 3}, layer_types=["conv", "full_attention", "conv"]
        ),
        "bert": lambda: t.BertConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=512,
            vocab_size=V,
            pad_token_id=0,
        ),
        "t5": lambda: t.T5Config(
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            vocab_size=V,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=2,
        ),
        "bart": lambda: t.BartConfig(
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=512,
            decoder_start_token_id=2,
            forced_eos_token_id=None,
            **IDS,
        ),
    }
    return table[name]()


FAMILIES = ["llama", "qwen2", "qwen3", "mistral", "gemma2", "gemma3", "phi", "olmo", "gpt_oss",
            "gpt2", "gpt_neox", "gptj", "falcon", "bloom", "jetmoe", "qwen3_next", "lfm2", "bert",
            "t5", "bart"]  # fmt: skip


def save_tiny(name: str, root: Path, seed: int = 0) -> Path:
    """Build ``name`` from its config with random weights and save it (+ tokenizer) to disk."""
    import torch
    import transformers as t

    config = _cfg(name)
    if name == "bert":
        auto = t.AutoModelForMaskedLM
    elif getattr(config, "is_encoder_decoder", False):
        auto = t.AutoModelForSeq2SeqLM
    else:
        auto = t.AutoModelForCausalLM
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = auto.from_config(config)
    path = root / name
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path
