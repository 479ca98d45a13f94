"""Point and bar from one statistic, and speed-ups that lead with end to end (issue 21)."""

from __future__ import annotations

import pytest

from llmlab.measure.latency import LatencySummary
from llmlab.measure.stats import Spread
from llmlab.tradeoff.result import Sweep, SweepPoint

#: Per-position KL as quantization gives it: most positions near 0, a few large ones. Its mean
#: (0.00141-like) lies above its third quartile.
SKEWED_KL = [0.00005] * 20 + [0.0006] * 10 + [0.0012] * 6 + [0.012, 0.015, 0.02]


def test_a_mean_is_drawn_with_its_confidence_interval_not_the_quartiles():
    kl = Spread(SKEWED_KL, headline="mean")
    assert kl.mean > kl.q3  # why a mean with an IQR bar fell outside its own bar
    lo, hi = kl.interval
    assert lo <= kl.mean <= hi and kl.interval_name == "95% CI"
    assert "mean, 95% CI" in kl.format("nats")
    median = Spread([3.0, 1.0, 2.0, 10.0])
    assert median.interval == (median.q1, median.q3) and median.interval_name == "IQR"
    assert Spread([1.0], headline="mean").interval is None  # no bar from one sample


def _latency(e2e: float, ttft: float, tpot: float, tokens: int = 15) -> LatencySummary:
    one = lambda v: Spread([v, v, v])  # noqa: E731
    return LatencySummary(
        ttft_s=one(ttft),
        tpot_s=one(tpot),
        itl_s=one(tpot),
        decode_tps=one(1 / tpot),
        e2e_s=one(e2e),
        s_per_token=one(e2e / tokens),
        new_tokens=one(tokens),
        runs=3,
    )


@pytest.fixture
def sweep():
    base = SweepPoint("baseline", True, is_baseline=True, latency=_latency(3.92, 1.066, 0.204))
    base.kl, base.top1 = Spread([0.0] * 5, headline="mean"), Spread([1.0, 1.0], headline="mean")
    hybrid = SweepPoint("spec=hybrid", True, latency=_latency(2.79, 2.236, 0.0392))
    hybrid.kl = Spread(SKEWED_KL, headline="mean")
    hybrid.top1 = Spread([0.9, 1.0], headline="mean")
    hybrid.greedy_matches = base.greedy_matches = [True, True]
    return Sweep(
        model="m",
        device="cpu",
        dtype="float32",
        prompts=["a", "b"],
        settings={"max_new_tokens": 15},
        repeats=3,
        warmup=0,
        configs=["spec=hybrid"],
        points=[base, hybrid],
        status="done",
    )


def test_every_plotted_point_sits_inside_its_own_bar(sweep):
    from llmlab.tradeoff.render import build_figure

    for axes in (("tpot", "kl"), ("ttft", "top1")):
        fig = build_figure(sweep, axes)
        for trace in fig.data:
            if trace.error_y is None or trace.error_y.array is None:
                continue
            assert all(v >= 0 for v in trace.error_y.array)
            assert all(v >= 0 for v in trace.error_y.arrayminus)
    row = sweep.points[1].row()
    assert row["kl_lo"] <= row["kl"] <= row["kl_hi"] and row["kl_bar"] == "95% CI"
    assert row["tpot_ms_lo"] == row["tpot_ms_q1"] and row["tpot_ms_bar"] == "IQR"


def test_the_sweep_leads_with_end_to_end_speedup(sweep):
    from llmlab.tradeoff.render import hover_text, table_html

    up = sweep.points[1].speedup_over(sweep.baseline)
    assert up["e2e"] == pytest.approx(3.92 / 2.79) and up["decode"] == pytest.approx(5.2, 0.01)
    html = table_html(sweep)
    assert "speed-up, end to end" in html and "<b>1.41×</b>" in html
    assert "decode 5.20× · TTFT 0.48×" in html
    assert "end to end: 1.41× (decode 5.20×, TTFT 0.48×)" in hover_text(sweep.points[1], sweep)
    assert "end to end 1.41×" in sweep.to_text()
    assert "95% CI" in html  # the KL cell's bar says what it is


def test_the_sweep_says_under_which_threads_it_ran(sweep, monkeypatch):
    import torch

    from llmlab.tradeoff.render import header_html

    monkeypatch.setattr("os.getloadavg", lambda: (7.25, 7.0, 7.0))
    fresh = Sweep(
        **{
            k: getattr(sweep, k)
            for k in (
                "model",
                "device",
                "dtype",
                "prompts",
                "settings",
                "repeats",
                "warmup",
                "configs",
            )
        }
    )
    html = header_html(fresh)
    threads = torch.get_num_threads()
    assert f"{threads} torch thread" in html and "load average 7.2 on" in html
    assert "2 prompts × 3 repeats" in html
    one = Sweep(
        **{
            **{
                k: getattr(fresh, k)
                for k in ("model", "device", "dtype", "settings", "warmup", "configs")
            },
            "prompts": ["a"],
            "repeats": 1,
        }
    )
    assert "1 prompt × 1 repeat " in header_html(one)
