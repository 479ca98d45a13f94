"""The axes a sweep can be plotted on, and how ``--axes`` is read (checked by the runner
before anything runs, drawn by :mod:`llmlab.tradeoff.render`)."""

from __future__ import annotations

from dataclasses import dataclass

from llmlab.errors import LabError


@dataclass(frozen=True)
class Axis:
    key: str
    column: str  # in SweepPoint.row()
    title: str
    better: str  # "low" or "high"
    log: bool = False
    spread: bool = True  # the row has the _lo/_hi bar columns (and _q1/_q3/_p90)


X_AXES = {
    a.key: a
    for a in [
        Axis("tpot", "tpot_ms", "time per output token (ms, median, IQR bars)", "low"),
        Axis("ttft", "ttft_ms", "time to first token (ms)", "low"),
        Axis("e2e", "e2e_s", "end-to-end time per answer (s)", "low"),
        Axis("tps", "decode_tps", "decode tokens / s", "high"),
        Axis("cost", "usd_per_mtok", "US$ per 1M output tokens", "low"),
        Axis("memory", "peak_mem_mb", "peak memory (MB)", "low", spread=False),
        Axis("weights", "weight_mb", "weight bytes (MB)", "low", spread=False),
        Axis("roofline", "roofline_pct", "% of memory-bandwidth roofline", "high"),
    ]
}
Y_AXES = {
    a.key: a
    for a in [
        Axis(
            "kl",
            "kl",
            "mean KL vs reference (nats, 95% CI; 0 at the floor)",
            "low",
            log=True,
        ),
        Axis("top1", "top1", "top-1 agreement with reference (mean, 95% CI bars)", "high"),
        Axis(
            "greedy", "greedy_match", "greedy outputs identical to reference", "high", spread=False
        ),
        Axis("ppl", "perplexity", "perplexity on the text", "low", spread=False),
        Axis("acceptance", "acceptance", "draft acceptance rate (mean, 95% CI bars)", "high"),
    ]
}


def check_axes(axes: tuple[str, str] | list[str]) -> tuple[str, str]:
    if len(axes) != 2:
        raise LabError("--axes takes two names, x then y, e.g. --axes tpot,kl")
    x, y = axes
    # Either order works; quality names belong on y.
    if x in Y_AXES and y in X_AXES:
        x, y = y, x
    if x not in X_AXES:
        raise LabError(f"unknown x axis {x!r}; choose one of {', '.join(X_AXES)}")
    if y not in Y_AXES:
        raise LabError(f"unknown y axis {y!r}; choose one of {', '.join(Y_AXES)}")
    return x, y


def parse_axes(text: str) -> tuple[str, str]:
    return check_axes([a.strip() for a in text.split(",")])
