"""Logit lens on tiny random models of many families: every layer read through the model's own
final norm and unembedding, the last row equal to the model's logits, hooks removed after."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmlab.coverage.configs import build
from llmlab.errors import LabError
from llmlab.lens import compare, lens, lens_reader
from llmlab.lens.capture import residuals
from llmlab.models.loaded import LoadedModel

TEXT = "The lens reads every layer."
#: Dense, hybrid and MoE families with different norm names, heads and logit transforms.
FAMILIES = [
    "gpt2",  # transformer.ln_f, tied
    "gpt_neox",  # gpt_neox.final_layer_norm (Pythia)
    "llama",
    "qwen3",
    "gemma2",  # final_logit_softcapping
    "phi",  # model.final_layernorm
    "falcon",
    "bloom",
    "cohere",  # logit_scale
    "granite",  # logits_scaling
    "qwen3_next",  # hybrid: linear attention + attention
    "lfm2",  # hybrid: convolution + attention
    "mixtral",  # MoE
    "bert",  # BERT as a decoder: a head (dense, norm) around the unembedding
]


def tiny(family: str) -> LoadedModel:
    model, tokenizer = build(family)
    return LoadedModel(
        name=family, spec=family, model=model, tokenizer=tokenizer, device="cpu",
        source="random", load_seconds=0.0,
    )  # fmt: skip


@pytest.mark.parametrize("family", FAMILIES)
def test_last_row_is_the_models_own_logits(family):
    lm = tiny(family)
    ids = lm.tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.inference_mode():
        logits = lm.model(input_ids=ids).logits[0].float()
    res = residuals(lm, ids)
    # The last residual read through the lens reproduces the logits at every position.
    torch.testing.assert_close(res.reader(res.hidden[-1]).float(), logits, rtol=1e-4, atol=1e-4)
    result = lens(lm, TEXT)
    assert result.n_rows == lm.config.get_text_config().num_hidden_layers + 1
    assert result.top_ids[-1, :, 0].tolist() == logits.argmax(-1).tolist()
    np.testing.assert_allclose(result.top_probs[-1, :, 0], logits.softmax(-1).max(-1).values,
                               rtol=1e-4)  # fmt: skip
    assert (result.final_rank[-1] == 0).all() and np.allclose(result.kl[-1], 0, atol=1e-5)
    # Every row is a distribution: entropy within [0, ln V], KL to final ≥ 0.
    assert (result.entropy >= -1e-4).all() and (
        result.entropy <= np.log(logits.shape[-1]) + 1e-3
    ).all()
    assert (result.kl >= 0).all()
    # No hook is left on the final norm.
    norm = lens_reader(lm.model).norm
    assert norm is None or not norm._forward_pre_hooks


def test_family_quirks_in_the_reading():
    assert "final_logit_softcapping" in lens_reader(tiny("gemma2").model).describe()
    assert "logits_scaling" in lens_reader(tiny("granite").model).describe()
    assert "ln_f" in lens_reader(tiny("gpt2").model).describe()
    assert "final_layer_norm" in lens_reader(tiny("gpt_neox").model).describe()


def test_intermediate_rows_are_the_final_norm_and_head_of_hidden_states():
    lm = tiny("llama")
    ids = lm.tokenizer(TEXT, return_tensors="pt").input_ids
    result = lens(lm, TEXT)
    with torch.inference_mode():
        out = lm.model(input_ids=ids, output_hidden_states=True)
        h = out.hidden_states[2][0]
        expected = lm.model.lm_head(lm.model.model.norm(h)).softmax(-1)
    top = expected.topk(5, dim=-1)
    assert result.top_ids[2].tolist() == top.indices.tolist()
    np.testing.assert_allclose(result.top_probs[2], top.values.numpy(), rtol=1e-4, atol=1e-6)


def test_compare_variant_layer_by_layer():
    lm = tiny("llama")
    same = compare(lm, "attn=eager", TEXT)
    assert same.agree.all() and same.kl.max() < 1e-5
    diff = compare(lm, "bf16", TEXT)
    table = diff.layer_table()
    assert list(table["row"]) == diff.a.rows and diff.b.label.endswith("(dtype=bf16)")
    assert (diff.kl > 0).any() and 0 <= table["top-1 agreement"].min() <= 1
    assert diff.a.top_ids.tolist() == lens(lm, TEXT).top_ids.tolist()  # A is the plain lens


def test_results_render_and_escape():
    result = lens(tiny("llama"), TEXT)
    result.tokens[1] = "</script><script>alert(1)"
    html = result.to_html()
    assert "<script>alert" not in html and "&lt;/script&gt;" in html
    frame = result.to_pandas()
    assert len(frame) == result.n_rows * result.n_tokens
    assert set(frame.columns) >= {"layer", "token", "top token", "p", "rank of final"}
    payload = result.payload()
    assert len(payload["a"]["top"]) == result.n_rows and payload["compare"] is None
    assert "LensResult(" in result.summary()


def test_clear_lines_for_what_cannot_be_read(monkeypatch):
    lm = tiny("llama")
    with pytest.raises(LabError, match="empty"):
        lens(lm, "   ")
    monkeypatch.setattr(type(lm.model), "get_output_embeddings", lambda self: None)
    with pytest.raises(LabError, match="no.*output embedding|has none"):
        lens(lm, TEXT)


def test_a_wrong_adapter_is_refused_not_shown(monkeypatch):
    from llmlab.lens import adapters

    lm = tiny("granite")
    lm.model.config.logits_scaling = 8.0  # Granite divides its logits by this at every forward
    assert lens(lm, TEXT).reading.endswith("logits_scaling=8")
    # Without the table's entry, the reading no longer reproduces the logits: refused.
    monkeypatch.setattr(
        adapters,
        "LOGIT_TRANSFORMS",
        [t for t in adapters.LOGIT_TRANSFORMS if t[0] != "logits_scaling"],
    )
    with pytest.raises(LabError, match="cannot reproduce granite's logits"):
        lens(lm, TEXT)
