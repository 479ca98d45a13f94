"""Memory estimates agree with what the captures allocate, and refusals are one clear line."""

from __future__ import annotations

import pytest

from llmlab import memory
from llmlab.errors import LabError


@pytest.fixture(autouse=True)
def _no_fixed_budget(monkeypatch):
    monkeypatch.delenv(memory.BUDGET_ENV, raising=False)
    memory.set_budget(None)
    yield
    memory.set_budget(None)


def test_attention_estimate_counts_the_capture_store(tiny_llama):
    import torch

    from llmlab.attention.capture import capture

    ids = torch.arange(5, 45)[None]
    captured = capture(tiny_llama, ids)
    est = memory.attention_capture(tiny_llama.config, tokens=40)
    stored = captured.nbytes  # queries, keys, thumbnails, the mask
    # The estimate is the stores plus one chunk's transient scores: never below what is kept.
    assert stored <= est.bytes <= stored * 2
    assert "layers ×" in est.breakdown and "--layers" in est.advice


def test_attention_estimate_scales_with_layers_and_tokens_squared(tiny_llama):
    cfg = tiny_llama.config
    full = memory.attention_capture(cfg, 1024)
    half = memory.attention_capture(cfg, 1024, layers=cfg.num_hidden_layers // 2)
    assert half.bytes < full.bytes
    # The mask grows with n², the kept queries and keys with n.
    assert full.bytes < memory.attention_capture(cfg, 2048).bytes < 4 * full.bytes


def test_guard_refuses_in_one_line_with_estimate_and_advice(tiny_llama):
    est = memory.attention_capture(tiny_llama.config, 512)
    memory.set_budget(est.bytes - 1)
    with pytest.raises(LabError) as err:
        memory.guard(est)
    text = str(err.value)
    assert "\n" not in text
    assert "attention capture would hold" in text and "set_budget" in text
    assert "--layers" in text
    memory.set_budget(est.bytes)
    assert memory.guard(est) is est


def test_budget_from_environment_and_free_memory(monkeypatch):
    limit, source = memory.budget("cpu")
    assert limit > 0 and "free RAM" in source
    monkeypatch.setenv(memory.BUDGET_ENV, "2GB")
    assert memory.budget("cpu") == (2 * 10**9, f"${memory.BUDGET_ENV}")


def test_a_big_model_capture_is_refused_here():
    # Llama-3-70B's shape at 8k tokens: the capture keeps queries and keys,
    # 80 layers x (64 + 64) heads x 8192 x 128 x 4 B = 43 GB (full weights would be 687 GB).
    from transformers import LlamaConfig

    cfg = LlamaConfig(num_hidden_layers=80, num_attention_heads=64, hidden_size=8192)
    est = memory.attention_capture(cfg, 8192)
    assert est.bytes > 43e9
    memory.set_budget(32 * 10**9)
    with pytest.raises(LabError, match="fewer layers"):
        memory.guard(est)


def test_lens_estimate_counts_residuals_and_logits(tiny_llama):
    cfg = tiny_llama.config
    est = memory.lens_capture(cfg, 100)
    rows, vocab, hidden = cfg.num_hidden_layers + 1, cfg.vocab_size, cfg.hidden_size
    assert est.bytes >= rows * 100 * hidden * 4 + 100 * vocab * 4
    # Reading chunk by chunk bounds the transient: past one chunk it grows with n, not n².
    a, b = memory.lens_capture(cfg, 1000), memory.lens_capture(cfg, 2000)
    assert b.bytes < 2.1 * a.bytes


def test_guards_sit_at_the_capture_entry_points(tiny_llama):
    import torch

    from llmlab.attention.capture import capture
    from llmlab.lens.engine import lens_of_ids
    from llmlab.tradeoff.runner import run_sweep

    memory.set_budget(1000)  # bytes: everything is refused before it runs
    ids = torch.arange(5, 45)[None]
    with pytest.raises(LabError, match="attention capture would hold"):
        capture(tiny_llama, ids)
    with pytest.raises(LabError, match="lens capture would hold"):
        lens_of_ids(tiny_llama, ids, text="x", n_prompt=40)
    with pytest.raises(LabError, match="tradeoff sweep would hold"):
        run_sweep(tiny_llama, "baseline,quant=int8", prompts=["Hi"], max_new_tokens=2)
    from llmlab.models.registry import load_model
    from llmlab.moe.capture import capture_routing

    with pytest.raises(LabError, match="MoE routing capture would hold"):
        capture_routing(load_model("tiny:mixtral"), "a few words to route")


def test_moe_estimate_covers_the_recorded_routing():
    from llmlab.models.registry import load_model
    from llmlab.moe.capture import capture_routing

    lm = load_model("tiny:mixtral")
    routing = capture_routing(lm, "def fib(n): return n if n < 2 else fib(n-1)")
    kept = routing.inputs[0]
    tokens = kept.experts.shape[1]
    est = memory.moe_capture(lm.config, tokens, layers=len(routing.moe_layers))
    assert kept.experts.nbytes + kept.weights.nbytes <= est.bytes
    assert est.bytes == len(routing.moe_layers) * tokens * routing.top_k * (8 + 4 + 2 + 4)
    assert memory.moe_capture(lm.config, tokens, keep_router_logits=True).bytes > est.bytes


def test_sweep_estimate_counts_copies_and_kv(tiny_llama):
    w = tiny_llama.weight_bytes
    none = memory.sweep(w, tiny_llama.config, [], 64)
    assert none.bytes == memory.kv_cache(tiny_llama.config, 64)
    two = memory.sweep(w, tiny_llama.config, ["quant=int8", "quant=int4", "dtype=bf16"], 64)
    # kept: bf16 (0.5) + int8 (0.45), plus one full copy while the next is made
    assert two.bytes == int(0.95 * w) + w + none.bytes
