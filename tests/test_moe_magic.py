"""%llm moe, the static HTML and the live payload."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from IPython.core.error import UsageError

from llmlab.moe import MoeRouting
from tests.helpers import run_magic


def test_moe_magic_returns_the_routing(ip, tmp_path):
    run_magic(ip, "load tiny:mixtral")
    routing = run_magic(ip, 'moe "hello experts"')
    assert isinstance(routing, MoeRouting)
    assert routing.n_tokens == len("hello experts") and routing.moe_layers == [0, 1, 2, 3]

    generated = run_magic(ip, "moe --generate 4 --layer 2 hi")
    assert generated.inputs[0].n_tokens == 2 + 4 - 1 and generated.focus_layer == 2

    (tmp_path / "code.txt").write_text("x = 1\n")
    (tmp_path / "prose.txt").write_text("the cat")
    both = run_magic(ip, f"moe --texts {tmp_path / 'code.txt'} {tmp_path / 'prose.txt'}")
    assert [i.name for i in both.inputs] == ["code", "prose"]

    body = run_magic(ip, "moe", "def f():\n    return 1")
    assert body.inputs[0].text == "def f():\n    return 1"


def test_moe_magic_errors_are_one_line(ip):
    run_magic(ip, "load tiny:llama")
    with pytest.raises(UsageError, match="this model has no experts"):
        run_magic(ip, "moe hello")
    run_magic(ip, "load tiny:qwen2_moe")
    with pytest.raises(UsageError, match="layer 0 is not a MoE layer"):
        run_magic(ip, "moe --layer 0 hello")
    with pytest.raises(UsageError, match="no such file"):
        run_magic(ip, "moe --texts /nonexistent.txt")


@pytest.fixture(scope="module")
def routing():
    from llmlab.models.registry import load_model
    from llmlab.moe import capture_routing

    lm = load_model("tiny:olmoe")
    return capture_routing(
        lm, {"code": "if a < b: print(a)", "evil": "</script><script>alert(1)</script>"}
    )


def test_payload_packs_the_exact_selection(routing):
    p = routing.payload()
    experts = np.frombuffer(base64.b64decode(p["experts_b64"]), dtype=np.uint8)
    np.testing.assert_array_equal(experts.reshape(routing.experts.shape), routing.experts)
    weights = np.frombuffer(base64.b64decode(p["weights_b64"]), dtype=np.uint8) / 255
    weights = weights.reshape(routing.weights.shape) * p["weight_max"]
    np.testing.assert_allclose(weights, routing.weights, atol=p["weight_max"] / 255)
    assert len(p["tokens"]) == routing.n_tokens and len(p["palette"]) == routing.n_experts
    assert p["inputs"][1]["start"] == routing.inputs[0].n_tokens


def test_static_html_escapes_tokens_and_has_every_view(routing):
    html = routing.to_html()
    assert "<script" not in html.lower()
    assert "&lt;" in html
    for title in ["Token × layer map", "Load per expert", "Co-activation", "Same-expert", "Across"]:
        assert title in html
    assert "untrained" in html


def test_statistics_are_consistent(routing):
    top1, topk = routing.load_counts()
    assert (top1.sum(1) == routing.n_tokens).all()
    assert (topk.sum(1) == routing.n_tokens * routing.top_k).all()
    p = routing.coactivation(0)
    np.testing.assert_allclose(p.sum(1)[topk[0] > 0], routing.top_k - 1)
    shares = routing.input_shares()
    np.testing.assert_allclose(shares.sum(-1), 1.0)
    table = routing.to_pandas()
    assert len(table) == routing.experts.size
    assert set(table.columns) >= {"input", "token", "layer", "rank", "expert", "weight"}
    runs = routing.same_expert_runs()
    assert ((runs["observed"] >= 0) & (runs["observed"] <= 1)).all()
