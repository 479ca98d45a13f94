"""Attention capture across families: tiny random checkpoints saved to disk, loaded by path,
captured weights equal to transformers' own eager ``output_attentions``."""

from __future__ import annotations

import pytest
import torch

from llmlab.attention import attention, capture, hook_count
from llmlab.errors import LabError
from llmlab.models.registry import load_model
from tests.attention_families import FAMILIES, save_tiny

TEXT = "The animal didn't cross the street."
TARGET = torch.tensor([[2, 5, 9, 33, 40]])  # decoder tokens for encoder-decoder models


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return lambda name: (
        str(save_tiny(name, root)) if not (root / name).exists() else str(root / name)
    )


def _reference(path: str, ids: torch.Tensor, encdec: bool) -> dict[str, list[torch.Tensor]]:
    """transformers' own weights: eager kernel, output_attentions=True."""
    ref = load_model(path, attn_implementation="eager")
    kw = {"decoder_input_ids": TARGET} if encdec else {}
    with torch.no_grad():
        out = ref.model(ids, output_attentions=True, **kw)
    if encdec:
        return {
            "encoder": out.encoder_attentions,
            "decoder": out.decoder_attentions,
            "cross": out.cross_attentions,
        }
    name = "encoder" if ref.is_encoder_only else "self"
    return {name: out.attentions}


@pytest.mark.parametrize("family", FAMILIES)
def test_capture_equals_eager_output_attentions(family, saved):
    lm = load_model(saved(family))
    kernel, hooks = lm.attn_implementation, hook_count(lm.model)
    ids = lm.tokenizer(TEXT, return_tensors="pt").input_ids
    encdec = lm.is_encoder_decoder
    got = capture.capture(lm, ids, target_ids=TARGET if encdec else None, precision="float32")
    assert lm.attn_implementation == kernel and hook_count(lm.model) == hooks
    reference = _reference(saved(family), ids, encdec)
    assert list(got.stacks) == list(reference)
    for name, stack in got.stacks.items():
        expected = [a for a in reference[name] if a is not None]
        assert len(stack.captured) == len(expected)
        for layer, ref in zip(stack.captured, expected):
            weights = torch.cat([p for _, _, p in stack.layer_rows(layer)], dim=1)
            assert (weights - ref[0].float()).abs().max() < 1e-5, (name, layer)
    # The model still runs as before the capture.
    with torch.no_grad():
        kw = {"decoder_input_ids": TARGET} if encdec else {}
        lm.model(ids, **kw)


@pytest.mark.parametrize(
    "family, kinds",
    [
        ("qwen3_next", ["linear attention (Gated DeltaNet)", "attention"]),
        ("lfm2", ["short convolution", "attention", "short convolution"]),
    ],
)
def test_hybrids_capture_attention_layers_and_name_the_others(family, kinds, saved):
    lm = load_model(saved(family))
    att = attention(lm, TEXT)
    stack = att.captured.main
    assert [i.kind for i in stack.layers] == kinds
    assert att.layers == [i for i, k in enumerate(kinds) if k == "attention"]
    structure = att.payload()["stacks"][0]["layers"]
    assert [(x["kind"], x["captured"]) for x in structure] == [(k, k == "attention") for k in kinds]
    with pytest.raises(LabError) as err:
        attention(lm, TEXT, layer=0)
    assert str(err.value).startswith(f"layer 0 is {kinds[0]} in the {family!r} family")
    assert "no attention weights there (layers with attention: 1)" in str(err.value)
    assert "layer 0 is" in att.answer({"kind": "head", "layer": 0, "head": 0})[0]["error"]


def test_encoder_decoder_has_three_labelled_stacks(saved):
    lm = load_model(saved("t5"))
    att = attention(lm, TEXT, generate=4)
    assert att.stack_names == ["encoder", "decoder", "cross"]
    titles = [s["title"] for s in att.payload()["stacks"]]
    assert titles == [
        "encoder self-attention",
        "decoder masked self-attention",
        "cross-attention (decoder → encoder)",
    ]
    n_src, n_tgt = att.n_tokens, len(att.target_tokens)
    assert att.head_weights(1, 0, "cross").shape == (n_tgt, n_src)
    assert att.head_weights(0, 0, "decoder").shape == (n_tgt, n_tgt)
    assert set(att.stats("cross")) == {"entropy", "sink"}  # no "previous token" across sequences
    reply, (buf,) = att.answer({"kind": "row", "stack": "cross", "layer": 0, "query": 1})
    assert len(buf) == 4 * att.stack("cross").n_heads * n_src
    assert "stack" in att.to_pandas().columns
    html = att.to_html()
    assert "Cross-attention (decoder → encoder)" in html and "Encoder self-attention" in html


def test_encoder_only_cannot_generate_but_shows_attention(saved):
    from llmlab.generation.engine import generate

    lm = load_model(saved("bert"))
    with pytest.raises(LabError, match=r"^bert \(bert\) is encoder-only: it cannot generate text$"):
        generate(lm, "hello", raw=True)
    with pytest.raises(LabError, match="encoder-only"):
        attention(lm, TEXT, generate=3)
    att = attention(lm, TEXT)
    assert att.stack_names == ["encoder"]
    # Bidirectional: early tokens attend to later ones.
    assert att.head_weights(0, 0)[0, 1:].sum() > 0.5


def test_seq2seq_generates_through_the_registry(saved):
    from llmlab.generation.engine import generate

    lm = load_model(saved("bart"))
    r = generate(lm, "hello", raw=True)
    assert r.stats.new_tokens >= 1 and r.stats.prompt_tokens == len("hello")


def test_alibi_families_keep_float16_unless_asked(saved):
    lm = load_model(saved("bloom"))
    ids = lm.tokenizer(TEXT, return_tensors="pt").input_ids
    half = capture.capture(lm, ids)
    exact = capture.capture(lm, ids, precision="float32")
    assert half.main.sources[0].w.dtype == torch.float16
    assert exact.main.sources[0].w.dtype == torch.float32
    assert (half.weights - exact.weights).abs().max() < 1e-3


def _coverage_model(family: str, root):
    """A family from the coverage matrix's tiny configs (llmlab.coverage.configs), by path."""
    from llmlab.coverage.configs import build

    folder = root / family
    model, tokenizer = build(family)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return load_model(str(folder))


def test_layers_of_another_shape_are_named_not_drawn(tmp_path):
    # DeepSeek-V4's compressed-sparse layer 3 attends to compressed blocks after the tokens.
    lm = _coverage_model("deepseek_v4", tmp_path)
    att = attention(lm, TEXT)
    stack = att.captured.main
    assert stack.captured == [0, 1, 2]
    assert "not one key per token" in stack.layers[3].note
    with pytest.raises(LabError, match="layer 3 is not shown: it attends to"):
        attention(lm, TEXT, layer=3)


def test_recurrent_family_refused_in_one_line(tmp_path):
    lm = _coverage_model("rwkv", tmp_path)
    with pytest.raises(LabError, match=r"its layers are RWKV time mixing \(recurrent\)\)$"):
        attention(lm, TEXT)
