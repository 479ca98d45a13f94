"""Attention on the real default model (slow tier): exact capture, GQA, a compared variant."""

from __future__ import annotations

import pytest
import torch

from llmlab.attention import attention, capture, compare, hook_count
from llmlab.models.registry import load_model

pytestmark = pytest.mark.slow
TEXT = "The animal didn't cross the street because it was too tired."


def test_capture_equals_eager_attention_on_the_default_model(default_lm):
    ids = default_lm.tokenizer(TEXT, return_tensors="pt").input_ids
    before = hook_count(default_lm.model)
    got = capture.capture(default_lm, ids)
    assert hook_count(default_lm.model) == before
    assert default_lm.attn_implementation == "sdpa"
    eager = load_model("default", attn_implementation="eager")
    with torch.no_grad():
        out = eager.model(ids, output_attentions=True)
    reference = torch.stack([a[0].float() for a in out.attentions])
    assert got.weights.shape == (30, 9, ids.shape[1], ids.shape[1])
    assert (got.weights - reference).abs().max() < 1e-5


def test_default_model_heads_and_views(default_lm):
    att = attention(default_lm, TEXT, layer=12, head=3)
    # 9 query heads share 3 key/value heads.
    assert att.n_kv_heads == 3 and [att.kv_head(h) for h in (0, 2, 3, 8)] == [0, 0, 1, 2]
    frame = att.to_pandas()
    # A trained model has heads that mostly look one token back and heads that sink.
    assert frame["previous-token"].max() > 0.5
    assert frame["sink mass"].max() > 0.5
    html = att.to_html()
    assert html.count("<img") == 30 * 9


def test_generated_tokens_are_covered(default_lm):
    att = attention(default_lm, "What is the capital of France?", generate=8)
    assert att.n_tokens > att.n_prompt
    assert "Paris" in "".join(att.tokens[att.n_prompt :])


def test_a_layer_range_keeps_only_those_layers(default_lm):
    att = attention(default_lm, TEXT * 8, layers="10-12")
    full_kept = attention(default_lm, TEXT * 8).captured.nbytes
    assert att.layers == [10, 11, 12] and att.n_layers == 30
    assert att.captured.nbytes < full_kept / 5
    assert "3 of 30 layers" in att.summary()


def test_int8_variant_changes_some_heads(default_lm):
    diff = compare(default_lm, "int8", TEXT)
    ranking = diff.ranking()
    assert ranking["change (mean TV)"].iloc[0] > ranking["change (mean TV)"].iloc[-1] >= 0
    assert ranking["change (mean TV)"].iloc[0] > 1e-3
    assert default_lm.dtype == "float32" and default_lm.attn_implementation == "sdpa"
