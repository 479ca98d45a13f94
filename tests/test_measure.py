"""The measurement harness: spreads, latency, quality metrics and cost, on tiny models."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from llmlab.errors import LabError
from llmlab.measure import (
    PeakMemory,
    Spread,
    compare_logprobs,
    continuation_logprobs,
    default_text,
    greedy_match,
    kv_cache_bytes,
    model_weight_bytes,
    perplexity,
    roofline_fraction,
    summarize_generations,
    time_call,
    usd_per_million_tokens,
)
from llmlab.measure import bandwidth as bw


def test_spread_matches_numpy_quantiles():
    values = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0]
    s = Spread(values)
    assert s.median == np.median(values)
    for q, attr in ((0.25, "q1"), (0.75, "q3"), (0.1, "p10"), (0.9, "p90")):
        assert getattr(s, attr) == pytest.approx(np.quantile(values, q))
    assert s.iqr == pytest.approx(np.quantile(values, 0.75) - np.quantile(values, 0.25))
    assert Spread(values, headline="mean").value == pytest.approx(np.mean(values))
    text = Spread([0.010, 0.011, 0.013]).format("ms", 1e3)
    assert text.startswith("11 ms (IQR") and "p90" in text and "n=3" in text
    assert Spread([]).format() == "n/a" and Spread([]).value is None


def test_time_call_warms_up_then_repeats():
    calls = []
    spread = time_call(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and spread.n == 4
    with pytest.raises(LabError, match="at least 3"):
        time_call(lambda: None, repeats=2)


def test_warm_up_once_runs_once_per_owner_and_key():
    from llmlab.measure.latency import warm_up_once

    class Owner:  # stands for a model module (weakly referenced)
        pass

    owner, calls = Owner(), []
    assert warm_up_once(owner, "a", lambda: calls.append(1)) >= 0
    assert warm_up_once(owner, "a", lambda: calls.append(1)) is None
    assert warm_up_once(owner, "b", lambda: calls.append(1)) is not None
    assert warm_up_once(Owner(), "a", lambda: calls.append(1)) is not None
    assert len(calls) == 3
    with pytest.raises(RuntimeError):  # a failed warm-up is not marked warm
        warm_up_once(owner, "c", lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert warm_up_once(owner, "c", lambda: calls.append(1)) is not None


def _fake_result(times, prompt_tokens=5, extra=None):
    from llmlab.generation.result import GenerationStats

    stats = GenerationStats(
        prompt_tokens=prompt_tokens,
        new_tokens=len(times),
        ttft_s=times[0],
        total_s=times[-1] + 0.01,
        token_times_s=times,
        peak_memory_bytes=0,
        peak_memory_kind="process peak RSS",
        device="cpu",
        dtype="float32",
        stopped="length",
        extra=extra or {},
    )
    return SimpleNamespace(stats=stats)


def test_tpot_is_per_run_and_honest_under_bursts():
    # A speculative run: 4 tokens arrive at once, then 4 more; gaps are mostly zero but the
    # time per output token is the span over the tokens after the first.
    burst = _fake_result([0.1, 0.1, 0.1, 0.1, 0.3, 0.3, 0.3, 0.3])
    steady = _fake_result([0.1, 0.2, 0.3, 0.4])
    summary = summarize_generations([burst, steady])
    assert summary.tpot_s.values == pytest.approx([0.2 / 7, 0.1])
    assert summary.itl_s.median == 0.0  # inter-token gaps: the bursts show
    assert summary.ttft_s.values == [0.1, 0.1] and summary.runs == 2
    assert summary.s_per_token.values == pytest.approx([0.31 / 8, 0.41 / 4])


def test_kl_and_top1_against_a_direct_computation():
    import torch

    torch.manual_seed(0)
    ref = torch.log_softmax(torch.randn(6, 50, dtype=torch.float64), -1)
    same = compare_logprobs(ref, ref.clone())
    assert same.mean_kl == 0.0 and same.top1_agreement == 1.0
    cand = torch.log_softmax(ref + 0.3 * torch.randn(6, 50, dtype=torch.float64), -1)
    got = compare_logprobs(ref, cand)
    expected = torch.nn.functional.kl_div(cand, ref, log_target=True, reduction="none").sum(-1)
    assert got.kl == pytest.approx(expected.tolist())
    assert got.top1 == (ref.argmax(-1) == cand.argmax(-1)).tolist()
    with pytest.raises(LabError, match="vocabularies"):
        compare_logprobs(ref, cand[:, :40])


def test_greedy_match_reports_first_difference():
    assert greedy_match([1, 2, 3], [1, 2, 3]) == (True, 3)
    assert greedy_match([1, 2, 3], [1, 5, 3]) == (False, 1)
    assert greedy_match([1, 2, 3], [1, 2]) == (False, 2)


def test_teacher_forced_logprobs_and_perplexity_match_the_model_loss(tiny_llama):
    import torch

    ids = tiny_llama.tokenizer("hello there, world", return_tensors="pt").input_ids[0]
    lp = continuation_logprobs(tiny_llama.model, ids, 3)
    assert lp.shape == (ids.shape[0] - 3, len(tiny_llama.tokenizer))
    with torch.no_grad():
        logits = tiny_llama.model(ids[None]).logits[0]
    assert torch.allclose(lp, torch.log_softmax(logits[2:-1].double(), -1), atol=1e-5)

    text = "The keeper wrote down the weather every evening."
    ppl = perplexity(tiny_llama, text)
    ids = tiny_llama.tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        loss = tiny_llama.model(ids, labels=ids).loss
    assert ppl.value == pytest.approx(math.exp(float(loss)), rel=1e-4)
    assert ppl.tokens == ids.shape[1] - 1
    with pytest.raises(LabError, match="empty"):
        perplexity(tiny_llama, "   ")


def test_default_text_ships():
    text = default_text()
    assert len(text.split()) > 300


def test_weight_bytes_count_quantized_modules(tiny_llama):
    import copy
    import warnings

    import torch

    fp32 = model_weight_bytes(tiny_llama.model)
    assert fp32 == pytest.approx(tiny_llama.weight_bytes, rel=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(tiny_llama.model), {torch.nn.Linear}, dtype=torch.qint8
        )
    int8 = model_weight_bytes(q)
    assert 0.2 * fp32 < int8 < 0.6 * fp32  # linears shrink 4x, embeddings stay fp32


def test_kv_bytes_cost_and_roofline(tiny_llama):
    # tiny llama: 4 layers, 2 KV heads of 64/4 = 16 dims
    assert kv_cache_bytes(tiny_llama.config, 10, 4) == 2 * 4 * 2 * 16 * 10 * 4
    assert usd_per_million_tokens(0.01, 3.6) == pytest.approx(10.0)
    assert roofline_fraction(1e9, 10e9, 0.2) == pytest.approx(0.5)
    with pytest.raises(LabError):
        roofline_fraction(1e9, 10e9, 0.0)


def test_peak_memory_sees_an_allocation():
    import mmap

    with PeakMemory("cpu") as before:
        pass
    with PeakMemory("cpu") as pm:
        # Fresh pages for certain: a tensor may reuse heap memory freed by earlier tests and
        # still resident (the whole suite in one process), and then RSS rightly does not grow.
        block = mmap.mmap(-1, 160 * 2**20)
        block.write(b"\1" * len(block))  # touched
    assert pm.reading.kind.startswith("process peak RSS")
    assert pm.reading.peak_bytes >= before.reading.peak_bytes + 100 * 2**20
    block.close()


def test_bandwidth_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(bw, "measure_bandwidth", lambda device: calls.append(device) or 12e9)
    assert bw.memory_bandwidth("cpu") == 12e9
    assert bw.memory_bandwidth("cpu") == 12e9
    assert calls == ["cpu"] and (tmp_path / "bandwidth.json").exists()
    assert bw.memory_bandwidth("cpu", refresh=True) == 12e9 and len(calls) == 2


def test_bandwidth_measurement_is_plausible():
    value = bw.measure_bandwidth("cpu", nbytes=32 * 2**20)
    assert 1e8 < value < 1e13  # bytes/s: between 0.1 GB/s and 10 TB/s
