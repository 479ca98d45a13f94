"""Tiny random models built from configs: every architecture family, no weights, milliseconds.

They share a byte-level tokenizer built in memory, so they need no files and any two of them
can be compared token by token. Their output is noise by design: they exist to exercise code.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from llmlab.errors import LabError

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerFast

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# A small shape shared by all dense families: 4 layers, 4 query heads sharing 2 KV heads (GQA).
SMALL: dict[str, Any] = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    tie_word_embeddings=False,
)

TINY_CONFIGS: dict[str, Callable[[], PretrainedConfig]] = {}


def tiny_config(name: str) -> Callable:
    """Register a function that builds the config of ``tiny:NAME``."""

    def register(build: Callable[[], PretrainedConfig]) -> Callable[[], PretrainedConfig]:
        TINY_CONFIGS[name] = build
        return build

    return register


@cache
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer: one token per UTF-8 byte plus three specials (259 in all)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(SPECIALS + alphabet)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        bos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIALS[1:],
        chat_template=CHAT_TEMPLATE,
    )


def special_token_ids() -> dict[str, int]:
    tok = tiny_tokenizer()
    return dict(
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


@tiny_config("llama")
def _llama() -> PretrainedConfig:
    from transformers import LlamaConfig

    return LlamaConfig(**SMALL, **special_token_ids())


@tiny_config("qwen2")
def _qwen2() -> PretrainedConfig:
    from transformers import Qwen2Config

    return Qwen2Config(**SMALL, **special_token_ids())


@tiny_config("gemma")
def _gemma() -> PretrainedConfig:
    from transformers import GemmaConfig

    return GemmaConfig(**SMALL, head_dim=16, **special_token_ids())


def build_tiny(name: str, seed: int = 0) -> tuple[Any, PreTrainedTokenizerFast]:
    """A random model of family ``name`` (seeded, so two builds are identical) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    if name not in TINY_CONFIGS:
        known = ", ".join(f"tiny:{n}" for n in sorted(TINY_CONFIGS))
        raise LabError(f"unknown tiny model 'tiny:{name}'; known: {known}")
    config = TINY_CONFIGS[name]()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    return model, tiny_tokenizer()


from llmlab.models import tiny_moe  # noqa: E402,F401
