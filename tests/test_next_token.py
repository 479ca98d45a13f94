"""Next-token distribution: exact head, summarised tail, and the sampling cuts."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from llmlab.generation.next_token import next_token_distribution

JS = Path(__file__).resolve().parent.parent / "widgets" / "next_token.js"


def full_probs(lm, prompt, temperature):
    ids = lm.tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = lm.model(ids).logits[0, -1]
    return torch.softmax(logits / temperature, -1).sort(descending=True).values


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_probabilities_match_a_full_softmax(default_lm, temperature):
    # The real vocabulary (49k) exercises the tail histogram; it must stay accurate.
    d = next_token_distribution(default_lm, "The capital of France is")
    probs, kept, tail = d.reshape(temperature)
    exact = full_probs(default_lm, "The capital of France is", temperature)
    assert all(kept)
    assert probs[:20] == pytest.approx(exact[:20].tolist(), rel=0.02, abs=1e-5)
    assert tail == pytest.approx(float(exact[len(probs) :].sum()), rel=0.05, abs=1e-4)
    assert d.tokens[0] == " Paris"


def test_top_k_and_top_p_cut_and_renormalise(tiny_llama):
    d = next_token_distribution(tiny_llama, "hello")
    probs, kept, _ = d.reshape(1.0, top_k=5)
    assert sum(kept) == 5 and sum(probs) == pytest.approx(1.0)
    base, _, _ = d.reshape(1.0)
    probs, kept, _ = d.reshape(1.0, top_p=0.5)
    n = sum(kept)
    assert sum(base[: n - 1]) < 0.5 <= sum(base[:n]) + 1e-9
    assert sum(probs) == pytest.approx(1.0)


def test_low_temperature_sharpens(tiny_llama):
    d = next_token_distribution(tiny_llama, "hello")
    assert d.reshape(0.2)[0][0] > d.reshape(1.0)[0][0] > d.reshape(3.0)[0][0]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_widget_math_matches_python(tiny_llama, tmp_path):
    """The live view recomputes the cuts in JavaScript: it must agree with the engine."""
    d = next_token_distribution(tiny_llama, "hello")
    cases = [(1.0, 0, 1.0), (0.5, 5, 1.0), (1.7, 0, 0.8), (0.9, 3, 0.6)]
    script = tmp_path / "check.mjs"
    script.write_text(
        f"import {{ applyFilters }} from {json.dumps(JS.as_uri())};\n"
        f"const p = {json.dumps(d.payload())};\n"
        f"const cases = {json.dumps(cases)};\n"
        "console.log(JSON.stringify(cases.map(([t, k, q]) => applyFilters(p, t, k, q).probs)));\n"
    )
    out = json.loads(
        subprocess.run(["node", str(script)], capture_output=True, text=True, check=True).stdout
    )
    for (t, k, q), js_probs in zip(cases, out):
        py_probs, _, _ = d.reshape(t, k or None, q if q < 1 else None)
        assert js_probs == pytest.approx(py_probs, abs=1e-3)


def test_static_html_escapes_tokens(tiny_llama):
    d = next_token_distribution(tiny_llama, "hello")
    d.tokens[0] = "</script><script>alert(1)"
    assert "<script>alert" not in d.to_html()


def test_partial_characters_show_as_bytes():
    from llmlab.models.tiny import tiny_tokenizer
    from llmlab.tokens import token_texts

    tok = tiny_tokenizer()
    assert token_texts(tok, tok("é a").input_ids) == ["<0xC3>", "<0xA9>", " ", "a"]
