"""Attention capture, statistics, compact payload, comparison and bad input (tiny models)."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from IPython.core.error import UsageError

from llmlab.attention import attention, capture, compare, hook_count
from llmlab.attention.compute import Recipe
from llmlab.attention.encode import signed8, sqrt8
from llmlab.attention.reduce import LayerReducer, row_entropy_nats
from llmlab.errors import LabError
from llmlab.models.registry import load_model
from tests.helpers import run_magic

JS = Path(__file__).resolve().parent.parent / "widgets" / "attention.js"
TEXT = "The animal didn't cross the street because it was too tired."
EVIL = "</script><script>alert(1)"


def eager_reference(lm_eager, ids) -> torch.Tensor:
    """What transformers' own eager attention returns: (L, H, n, n)."""
    with torch.no_grad():
        out = lm_eager.model(ids, output_attentions=True)
    return torch.stack([a[0].float() for a in out.attentions])


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma"])
def test_capture_equals_eager_attention(family):
    lm = load_model(f"tiny:{family}")  # sdpa, as every model loads by default
    ref = load_model(f"tiny:{family}", attn_implementation="eager")
    ids = lm.tokenizer(TEXT, return_tensors="pt").input_ids
    got = capture.capture(lm, ids)
    assert (got.weights - eager_reference(ref, ids)).abs().max() < 1e-5
    # Queries and keys rounded to float16 (half the memory): weights within about 1e-3.
    half = capture.capture(lm, ids, precision="float16")
    assert (half.weights.float() - got.weights).abs().max() < 2e-3
    assert lm.attn_implementation == "sdpa"


def test_kernel_and_hooks_restored_also_when_capture_raises(tiny_llama, monkeypatch):
    ids = tiny_llama.tokenizer("hello", return_tensors="pt").input_ids
    before = hook_count(tiny_llama.model)
    capture.capture(tiny_llama, ids)
    assert hook_count(tiny_llama.model) == before
    assert tiny_llama.attn_implementation == "sdpa"

    def broken(*args, **kwargs):
        raise RuntimeError("boom in the middle of the forward pass")

    monkeypatch.setattr(capture.LayerReducer, "add", broken)
    with pytest.raises(RuntimeError, match="boom"):
        capture.capture(tiny_llama, ids)
    assert hook_count(tiny_llama.model) == before
    assert tiny_llama.attn_implementation == "sdpa"
    # The model still runs with its own kernel and gives the same logits as a fresh copy.
    fresh = load_model("tiny:llama")
    with torch.no_grad():
        assert torch.allclose(tiny_llama.model(ids).logits, fresh.model(ids).logits, atol=1e-6)


def test_statistics_on_known_patterns():
    n = 6
    prev = torch.zeros(1, n, n)
    prev[0, 0, 0] = 1
    for i in range(1, n):
        prev[0, i, i - 1] = 1
    sink = torch.zeros(1, n, n)
    sink[0, :, 0] = 1
    uniform = torch.tril(torch.ones(n, n))
    uniform = (uniform / uniform.sum(-1, keepdim=True))[None]
    a = torch.cat([prev, sink, uniform])
    reducer = LayerReducer(3, n, n, 64, causal=True, cross=False)
    reducer.add(0, a, row_entropy_nats(a))
    stats, thumbs = reducer.stats(), reducer.thumb
    assert stats["prev"][0] == pytest.approx(1.0)
    assert stats["sink"][1] == pytest.approx(1.0)
    assert stats["entropy"][0] == pytest.approx(0.0, abs=1e-6)
    assert stats["distance"][0] == pytest.approx(1.0)
    # Sink head: every query looks back to token 0, i.e. i tokens away; mean over rows 1..5.
    assert stats["distance"][1] == pytest.approx(np.mean(range(1, n)))
    expected_entropy = np.mean([np.log2(i + 1) for i in range(1, n)])
    assert stats["entropy"][2] == pytest.approx(expected_entropy, rel=1e-5)
    assert thumbs.shape == (3, n, n)


def test_entropy_from_logits_equals_entropy_of_weights():
    # The capture computes each row's entropy from its logits (no logarithm per weight).
    torch.manual_seed(0)
    q, k = torch.randn(4, 9, 8), torch.randn(2, 9, 8)
    mask = torch.full((9, 9), torch.finfo(torch.float32).min).triu(1)
    for sinks in (None, torch.randn(4)):
        r = Recipe(q=q, k=k, scaling=0.35, mask=mask, softcap=3.0, sinks=sinks)
        p, entropy, sums = r.probs(0, 9)
        assert torch.allclose(sums, p.sum(-1), atol=1e-6)
        assert torch.allclose(entropy, row_entropy_nats(p), atol=1e-5)
        # Chunks that skip the keys a causal mask hides give the same weights.
        r.key_stop = torch.arange(1, 10)
        p2 = r.probs(3, 6)[0]
        assert torch.allclose(p2, p[:, 3:6, : p2.shape[-1]], atol=1e-7)
        assert p2.shape[-1] == 6


def test_chunked_capture_equals_one_chunk(tiny_llama, monkeypatch):
    # Long inputs are computed in row chunks (skipping keys the causal mask hides): the
    # statistics, thumbnails and weights are those of one whole-layer chunk.
    from llmlab.attention import compute

    ids = torch.arange(3, 203)[None]  # 200 tokens: thumbnails pool 4 × 4 blocks
    whole = capture.capture(tiny_llama, ids)
    monkeypatch.setattr(compute, "CHUNK_ELEMENTS", 4 * 40 * 200)  # 5 chunks of 40 rows
    assert whole.main.sources[0].chunk_rows(4) == 40
    chunked = capture.capture(tiny_llama, ids)
    for key, value in whole.stats.items():
        assert torch.allclose(chunked.stats[key], value, atol=1e-5), key
    assert torch.allclose(chunked.thumbs, whole.thumbs, atol=1e-6)
    assert torch.allclose(chunked.weights, whole.weights, atol=1e-6)


def test_layers_keep_only_the_layers_asked_for(tiny_llama):
    att = attention(tiny_llama, TEXT, layers="1-2")
    assert att.layers == [1, 2] and att.n_layers == 4
    assert att.stats()["entropy"].shape == (2, 4)
    full = attention(tiny_llama, TEXT)
    assert np.allclose(att.head_weights(2, 1), full.head_weights(2, 1), atol=1e-6)
    assert att.captured.nbytes < full.captured.nbytes
    with pytest.raises(LabError, match="layer 0 was not captured"):
        att.head_weights(0, 0)
    assert [x["captured"] for x in att.payload()["stacks"][0]["layers"]] == [0, 1, 1, 0]
    assert "2 of 4 layers" in att.summary()
    with pytest.raises(LabError, match="runs backwards"):
        attention(tiny_llama, TEXT, layers="3-1")
    with pytest.raises(LabError, match="layer 4 is out of range"):
        attention(tiny_llama, TEXT, layers="2-7")


def test_statistics_match_the_weights(tiny_llama):
    att = attention(tiny_llama, TEXT)
    a = att.captured.weights.float()  # (L, H, n, n)
    rows = a[:, :, 1:, :]
    assert np.allclose(att.stats()["sink"], rows[..., 0].mean(-1).numpy(), atol=1e-3)
    prev = torch.diagonal(a, offset=-1, dim1=-2, dim2=-1).mean(-1)
    assert np.allclose(att.stats()["prev"], prev.numpy(), atol=1e-3)
    frame = att.to_pandas()
    assert len(frame) == att.n_layers * att.n_heads
    assert list(frame.columns[:3]) == ["layer", "head", "kv_head"]


def test_grouped_query_heads_are_reported(tiny_llama):
    att = attention(tiny_llama, "hello")
    # tiny models: 4 query heads over 2 key/value heads.
    assert [att.kv_head(h) for h in range(4)] == [0, 0, 1, 1]
    assert att.payload()["n_kv_heads"] == 2
    assert "KV 0" in att.to_html() and "2 KV heads (each shared by 2 query heads)" in att.to_html()


def test_generate_covers_prompt_and_output(tiny_llama):
    att = attention(tiny_llama, "hello", generate=6, chat=False)
    assert att.n_prompt == 5  # byte-level tokenizer: one token per byte
    assert att.n_tokens == att.n_prompt + 6
    assert att.captured.weights.shape[-1] == att.n_tokens
    # Generated tokens attend over the whole sequence before them, rows sum to 1.
    assert torch.allclose(
        att.captured.weights[0, 0, -1].float().sum(), torch.tensor(1.0), atol=1e-2
    )


def test_payload_is_compact_and_decodes(tiny_llama):
    att = attention(tiny_llama, "x" * 256, layer=1)
    p = att.payload()
    json.dumps(p)  # plain JSON
    thumb = p["a"]["stacks"]["self"]["thumb"]
    assert p["layer"] == 1 and thumb["rows"] == thumb["cols"] == 64
    thumbs = np.frombuffer(base64.b64decode(thumb["data"]), np.uint8)
    assert thumbs.size == 4 * 4 * 64 * 64  # 256 tokens are max-pooled to 64 pixels (4 × 4 blocks)
    assert np.array_equal(thumbs, sqrt8(att.captured.thumbs).ravel())
    # Max pooling keeps the strongest weight of each cell.
    assert float(att.captured.thumbs.max()) == pytest.approx(
        float(att.captured.weights.float().max()), abs=1e-3
    )
    # Full-resolution head on demand: u16, within 1/65535 of the stored weights.
    reply, (buf,) = att.answer({"id": 3, "kind": "head", "layer": 2, "head": 1})
    assert reply["id"] == 3 and reply["enc"] == "u16" and reply["n"] == 256
    full = np.frombuffer(buf, "<u2").reshape(256, 256) / 65535
    assert np.abs(full - att.head_weights(2, 1)).max() <= 1 / 65535
    # Lines for the head view: the strongest keys of each query, in order.
    lines = att.answer({"id": 4, "kind": "lines", "layer": 0})[0]["lines"]
    index = np.frombuffer(base64.b64decode(lines["index"]), "<u2").reshape(4, 256, lines["k"])
    top = att.captured.weights[0].float().topk(lines["k"], dim=-1).indices.numpy()
    assert np.array_equal(index[:, :, 0], top[:, :, 0])
    # An exact row: float32 for every head.
    reply, (buf,) = att.answer({"id": 5, "kind": "row", "layer": 3, "query": 150})
    assert np.allclose(np.frombuffer(buf, "<f4").reshape(4, 256), att.row(3, 150))
    # Mistakes come back as an error reply, never an exception in the comm handler.
    assert (
        "out of range" in att.answer({"id": 6, "kind": "head", "layer": 9, "head": 0})[0]["error"]
    )


def test_compare_with_a_dtype_variant_and_a_loaded_model(tiny_llama):
    diff = compare(tiny_llama, "dtype=bf16", TEXT)
    ranking = diff.ranking()
    assert ranking["change (mean TV)"].is_monotonic_decreasing
    assert 0 < ranking["change (mean TV)"].iloc[0] < 0.05  # bf16 rounding: small but visible
    assert tiny_llama.dtype == "float32"  # the original is untouched
    # A bare value picks the setting that has it.
    assert "bf16" in compare(tiny_llama, "bf16", "hi").b.label

    from llmlab.session import Lab

    lab = Lab()
    lab.models["tiny-llama"] = tiny_llama
    lab.load("tiny:qwen2")  # same tokenizer and head grid, other weights
    other = compare(tiny_llama, "tiny-qwen2", TEXT, lab=lab)
    assert other.b.label.startswith("tiny-qwen2")
    assert other.change.max() > 0
    p = other.payload()
    assert p["compare"]["diffs"]["self"]["enc"] == "signed8"
    codes = np.frombuffer(base64.b64decode(p["compare"]["diffs"]["self"]["data"]), np.uint8)
    assert np.array_equal(codes, signed8(other.diff_thumbs).ravel())
    reply, (buf,) = other.answer({"id": 1, "kind": "head", "layer": 0, "head": 0, "which": "diff"})
    d = np.frombuffer(buf, "<i2").reshape(other.a.n_tokens, -1) / 32767
    expected = other.b.head_weights(0, 0) - other.a.head_weights(0, 0)
    assert np.abs(d - expected).max() < 1e-4


def test_compare_same_model_is_zero(tiny_llama):
    from llmlab.session import Lab

    lab = Lab()
    lab.models["twin"] = dataclasses.replace(tiny_llama, name="twin")
    diff = compare(tiny_llama, "twin", "hello", lab=lab)
    assert diff.change.max() == 0


def _word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[UNK]")


def test_bad_input_is_one_line(tiny_llama, monkeypatch):
    from llmlab.session import Lab

    cases = {
        "layer 4 is out of range: tiny-llama has layers 0-3": dict(layer=4),
        "head 9 is out of range: tiny-llama has heads 0-3": dict(head=9),
    }
    for message, options in cases.items():
        with pytest.raises(LabError) as err:
            attention(tiny_llama, "hi", **options)
        assert str(err.value) == message
    with pytest.raises(LabError, match="empty"):
        attention(tiny_llama, "   ")
    with pytest.raises(LabError, match="context is 2048"):
        attention(tiny_llama, "x" * 3000)
    lab = Lab()
    lab.models["words"] = dataclasses.replace(tiny_llama, name="words", tokenizer=_word_tokenizer())
    with pytest.raises(LabError, match="different tokenizers"):
        compare(tiny_llama, "words", "hello", lab=lab)
    with pytest.raises(LabError, match="neither a loaded model"):
        compare(tiny_llama, "no-such-thing", "hello", lab=lab)


def test_family_without_attention_is_named():
    from transformers import MambaConfig, MambaForCausalLM

    from llmlab.models.loaded import LoadedModel
    from llmlab.models.tiny import tiny_tokenizer

    config = MambaConfig(vocab_size=259, hidden_size=16, state_size=4, num_hidden_layers=2)
    lm = LoadedModel("mamba", "x", MambaForCausalLM(config).eval(), tiny_tokenizer(), "cpu", "", 0)
    with pytest.raises(LabError, match="cannot capture attention of the 'mamba' family"):
        attention(lm, "hello")
    assert hook_count(lm.model) == 0


def test_static_html_escapes_tokens_and_is_offline(tiny_llama):
    att = attention(tiny_llama, "hello world")
    att.tokens[3] = EVIL
    diff = compare(tiny_llama, "bf16", "hello world")
    diff.a.tokens[3] = EVIL
    for html in (att.to_html(), diff.to_html()):
        assert "<script" not in html  # no script at all, and the token is inert text
        assert "&lt;/script&gt;&lt;script&gt;alert(1)" in html
        assert not re.search(r"(src|href)=.https?:", html)  # nothing to fetch
    html = diff.to_html()
    assert html.count("<img") == 2 * 4 * 4  # the difference grid and the attention grid
    assert "Most changed heads" in html and "<svg" in html


def test_magic_runs_views_and_reports_mistakes(ip):
    run_magic(ip, "load tiny:llama")
    att = run_magic(ip, "attention --layer 1 --head 2 hello there")
    assert (att.layer, att.head, att.n_tokens) == (1, 2, 11)
    att = run_magic(ip, "attention --generate 3 --raw", cell="from the cell body\n")
    assert att.n_tokens == len("from the cell body") + 3
    diff = run_magic(ip, "attention --compare bf16 hello")
    assert diff.b.label.endswith("(dtype=bf16)")
    for line, message in [
        ("attention --layer 40 hi", "layer 40 is out of range"),
        ("attention --head -1 hi", "head -1 is out of range"),
        ("attention", "the text is empty"),
        ("attention --compare nope hi", "neither a loaded model"),
    ]:
        with pytest.raises(UsageError, match=message) as err:
            run_magic(ip, line)
        assert "\n" not in str(err.value)
    assert run_magic(ip, "attention ok").n_tokens == 2  # the session keeps working


def test_widget_answers_requests(tiny_llama):
    from llmlab.widgets.attention import AttentionView

    view = AttentionView(attention(tiny_llama, "hello"))
    sent = []
    view.send = lambda content, buffers=None: sent.append((content, buffers))
    view._on_request(view, {"id": 7, "kind": "head", "layer": 0, "head": 0}, [])
    assert sent[0][0]["id"] == 7 and len(sent[0][1][0]) == 5 * 5 * 2
    bundle = view._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "text/html" in data and "application/vnd.jupyter.widget-view+json" in data


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_decoding_matches_python(tmp_path):
    values = torch.tensor([0.0, 1e-4, 0.01, 0.25, 0.5, 1.0])
    diffs = torch.tensor([-1.0, -0.04, 0.0, 0.0009, 0.3, 1.0])
    script = tmp_path / "check.mjs"
    script.write_text(
        f"import {{ sqrt8Value, signed8Value }} from {json.dumps(JS.as_uri())};\n"
        f"const a = {json.dumps(sqrt8(values).tolist())};\n"
        f"const d = {json.dumps(signed8(diffs).tolist())};\n"
        "console.log(JSON.stringify([a.map(sqrt8Value), d.map(signed8Value)]));\n"
    )
    out = subprocess.run(["node", str(script)], capture_output=True, text=True, check=True)
    a, d = json.loads(out.stdout)
    assert a == pytest.approx(values.tolist(), abs=0.005)
    assert d == pytest.approx(diffs.tolist(), abs=0.01)
