"""The coverage matrix's parts, fast: small configs, one family checked in-process, the page."""

from __future__ import annotations

import pytest

from llmlab.coverage import configs, matrix


@pytest.mark.parametrize("family", ["llama", "gpt2", "jamba", "granitemoehybrid", "llama4"])
def test_configs_are_small_and_keep_their_kind(family):
    model, tokenizer = configs.build(family)
    assert sum(p.numel() for p in model.parameters()) < 5_000_000
    assert model.config.get_text_config().vocab_size == len(tokenizer)
    kinds = getattr(model.config.get_text_config(), "layer_types", None)
    if family in ("jamba", "granitemoehybrid"):
        assert kinds is None or len(set(kinds)) > 1  # a hybrid keeps attention and Mamba


def test_unbuildable_types_say_why():
    with pytest.raises(configs.Unbuildable, match="config"):
        configs.tiny_config("no-such-model-type")


def test_one_family_end_to_end(tmp_path):
    report = matrix.check_family("llama", tmp_path)
    assert not report.skipped and report.model_class == "LlamaForCausalLM"
    statuses = {name: o.status for name, o in report.features.items()}
    assert statuses == {**dict.fromkeys(matrix.FEATURES, "works"), "moe": "n/a"}
    page = matrix.markdown([report], seconds=1.0, versions=matrix.versions())
    assert "| lens | 1 | 0 | 0 | 0 |" in page and "| llama | LlamaForCausalLM | ✓ |" in page
