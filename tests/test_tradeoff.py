"""Tradeoff sweeps on a tiny model: the runner, the labels, bad input, stopping, rendering."""

from __future__ import annotations

import contextlib

import pytest

from llmlab.errors import LabError
from llmlab.tradeoff import (
    APPROXIMATING,
    PRESERVING,
    Configuration,
    build_figure,
    pareto_front,
    parse_axes,
    run_sweep,
    split_configs,
)

PROMPTS = ["hello", "tell me </script><script>alert(1)</script>"]
FAST = dict(max_new_tokens=4, repeats=3, warmup=1, text="a short text to score, twice over.")


@pytest.fixture(scope="module")
def sweep(tiny_llama_module):
    return run_sweep(tiny_llama_module, "baseline,kv=off,spec=prompt-lookup,bf16", PROMPTS, **FAST)


@pytest.fixture(scope="module")
def tiny_llama_module():
    from llmlab.models.registry import load_model

    return load_model("tiny:llama")


def _plain(label="plain", fail=None, claim=True, baseline=False, noise=None):
    """A configuration over the engine's own generate, optionally failing or adding weight
    noise to a copy of the model (an approximation that is easy to see even on noise models)."""
    from llmlab.generation.engine import generate

    @contextlib.contextmanager
    def open_(lm):
        if noise is None:
            yield lm
            return
        import copy
        import dataclasses

        import torch

        model = copy.deepcopy(lm.model)
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(0)
            for w in model.parameters():
                w.add_(noise * torch.randn_like(w))
        yield dataclasses.replace(lm, model=model)

    def run(base, vlm, prompt, settings, on_token=None):
        if fail is not None:
            raise fail
        return generate(vlm, prompt, settings, on_token=on_token)

    return Configuration(label, claim, open_, run, is_baseline=baseline)


def test_sweep_measures_every_configuration_with_spreads(sweep):
    names = [p.name for p in sweep.points]
    assert names == [
        "baseline",
        "kv=off",
        "spec=prompt-lookup",
        "dtype=bf16",
        "baseline (again)",
    ]
    assert sweep.status == "done" and sweep.done
    for p in sweep.points:
        assert p.status == "ok", p.error
        assert p.latency.tpot_s.n == len(PROMPTS) * 3  # one sample per timed run
        assert p.latency.ttft_s.q1 <= p.latency.ttft_s.median <= p.latency.ttft_s.q3
        assert p.peak_memory_bytes > 0 and p.weight_bytes > 0
        assert p.usd_per_mtok.value > 0
        assert len(p.texts) == len(PROMPTS) and p.perplexity > 1
    assert sweep.reference_texts == sweep.points[0].texts


def test_measured_labels_follow_kl_and_greedy_text(sweep):
    base, kv_off, spec, bf16, again = sweep.points
    for p in (base, kv_off, spec, again):
        assert p.kl.mean == 0.0 and all(p.greedy_matches)
        assert p.measured_label == PRESERVING and not p.label_disagrees
    assert bf16.kl.mean > 0 and bf16.claimed_label == APPROXIMATING
    assert kv_off.kv_bytes == 0 and base.kv_bytes > 0
    assert bf16.weight_bytes < 0.6 * base.weight_bytes
    assert spec.acceptance_rate is not None


def test_disagreement_with_the_registry_is_flagged(tiny_llama_module):
    lying = _plain("claims-preserving-but-noisy", noise=0.5, claim=True)
    s = run_sweep(tiny_llama_module, ["baseline", lying], PROMPTS, **FAST)
    p = s.point("claims-preserving-but-noisy")
    assert p.measured_label == APPROXIMATING and p.label_disagrees
    assert p.row()["disagrees"] is True
    fig = build_figure(s, ("tpot", "kl"))
    assert any("⚠" in t for tr in fig.data for t in (tr.text or ()))


def test_failing_configuration_is_recorded_and_the_sweep_goes_on(tiny_llama_module):
    broken = _plain("broken", fail=RuntimeError("kernel exploded\nsecond line"))
    s = run_sweep(tiny_llama_module, ["baseline", broken, "kv=off"], PROMPTS[:1], **FAST)
    assert [p.status for p in s.points] == ["ok", "failed", "ok", "ok"]
    assert s.point("broken").error == "RuntimeError: kernel exploded"
    assert s.status == "done"
    assert "kernel exploded" in s.to_html()


def test_missing_reference_is_said_on_every_row(tiny_llama_module):
    base = _plain("baseline", fail=RuntimeError("no memory"), baseline=True)
    s = run_sweep(tiny_llama_module, [base, _plain("other")], PROMPTS[:1], **FAST)
    other = s.point("other")
    assert other.status == "ok" and other.kl is None
    assert "reference (baseline) failed: RuntimeError: no memory" in other.quality_note
    assert other.measured_label is None


@pytest.mark.parametrize(
    ("configs", "prompts", "kwargs", "message"),
    [
        ("baseline,warp=9", PROMPTS, {}, "unknown acceleration 'warp'"),
        ("baseline,quant=int9", PROMPTS, {}, "unknown value 'int9'"),
        ("kv=off+spec=prompt-lookup", PROMPTS, {}, "spec needs a KV cache"),
        ("", PROMPTS, {}, "no configurations"),
        ("baseline", ["  ", ""], {}, "prompt set is empty"),
        ("baseline", PROMPTS, {"repeats": 2}, "at least 3"),
        ("baseline", PROMPTS, {"axes": ("tpot", "colour")}, "unknown y axis"),
    ],
)
def test_bad_input_fails_before_anything_runs(tiny_llama_module, configs, prompts, kwargs, message):
    with pytest.raises(LabError, match=message):
        run_sweep(tiny_llama_module, configs, prompts, **(FAST | kwargs))


def test_split_configs_and_axes():
    assert split_configs("baseline, kv=off,spec=prompt-lookup+quant=int8") == [
        "baseline",
        "kv=off",
        "spec=prompt-lookup+quant=int8",
    ]
    assert parse_axes("kl,tpot") == ("tpot", "kl")  # quality goes on y whatever the order
    with pytest.raises(LabError, match="two names"):
        parse_axes("tpot")


def test_stop_keeps_the_finished_points(tiny_llama_module):
    def stop_after_first(sweep, event):
        if event == "point":
            sweep.stop()

    s = run_sweep(
        tiny_llama_module, "baseline,kv=off,bf16", PROMPTS[:1], listeners=[stop_after_first], **FAST
    )
    assert s.status == "stopped" and [p.name for p in s.points] == ["baseline"]
    assert any("stopped by the user" in w for w in s.warnings)


def test_ctrl_c_keeps_the_finished_points(tiny_llama_module):
    interrupted = _plain("interrupted", fail=KeyboardInterrupt())
    s = run_sweep(tiny_llama_module, ["baseline", interrupted], PROMPTS[:1], **FAST)
    assert s.status == "stopped" and [p.name for p in s.points] == ["baseline"]


def test_background_sweep_fills_and_waits(tiny_llama_module):
    events = []
    s = run_sweep(
        tiny_llama_module,
        "baseline,kv=off",
        PROMPTS[:1],
        background=True,
        listeners=[lambda sw, e: events.append(e)],
        **FAST,
    )
    s.wait()
    assert s.done and len(s.points) == 3 and events[-1] == "end"
    assert events.count("point") == 3 and "progress" in events


def test_baseline_drift_warning(sweep):
    import copy

    from llmlab.measure.stats import Spread
    from llmlab.tradeoff.runner import _SweepJob

    s = copy.copy(sweep)
    s.points = [copy.deepcopy(p) for p in sweep.points]
    s.warnings = []
    again = s.points[-1]
    again.latency.tpot_s = Spread([v * 1.5 for v in s.points[0].latency.tpot_s.values])
    job = _SweepJob.__new__(_SweepJob)
    job.sweep = s
    job.check_drift()
    assert any("time per output token moved +50%" in w for w in s.warnings)


def test_pareto_front():
    pts = [(1.0, 0.5), (2.0, 0.1), (3.0, 0.2), (0.5, 0.9)]
    assert pareto_front(pts, x_low=True, y_low=True) == [3, 0, 1]
    assert pareto_front(pts, x_low=True, y_low=False) == [3]


def test_table_and_frame_carry_spreads(sweep):
    frame = sweep.to_pandas()
    assert list(frame.index) == [p.name for p in sweep.points]
    for col in ("tpot_ms", "tpot_ms_q1", "tpot_ms_q3", "tpot_ms_p90", "kl", "top1", "perplexity"):
        assert col in frame.columns
    assert frame.loc["kv=off", "measured"] == PRESERVING
    text = sweep.to_text()
    assert "IQR" in text and "kv=off" in text


def test_html_is_offline_interactive_and_escaped(sweep, tmp_path):
    html = sweep.to_html()
    assert "plotly" in html and "Plotly.newPlot" in html
    assert "<script src=" not in html  # plotly.js is inlined, nothing to fetch
    assert "llmlabSweepPage(" in html and "plotly_click" in html
    assert "<script>alert(1)" not in html  # model/prompt text stays inert
    path = sweep.save_html(tmp_path / "s.html")
    assert path.read_text().startswith("<!doctype html>")


@pytest.mark.parametrize("axes", [("ttft", "top1"), ("cost", "greedy"), ("memory", "ppl")])
def test_every_axis_pair_draws(sweep, axes):
    fig = build_figure(sweep, axes)
    points = sum(len(t.x) for t in fig.data if t.mode == "markers+text")
    assert points == len(sweep.points)


def test_compare_two_sweeps(sweep):
    cmp = sweep.compare(sweep, names=("a", "b"))
    frame = cmp.to_pandas()
    assert frame.loc["kv=off", "tpot_ms_ratio"] == pytest.approx(1.0)
    assert bool(frame.loc["kv=off", "tpot_ms_overlap"]) is True  # same data: within noise
    assert "within noise" in cmp.to_html() and "SweepComparison" in cmp.summary()
