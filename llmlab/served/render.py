"""How a load test looks: latency against throughput (one point per level, p50 with a whisker to
p99 where the sample resolves it), and the table of percentiles, each with the count behind it.
The same figure feeds the live widget and the offline HTML."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from llmlab.html import card, esc, plotly_chart
from llmlab.measure.stats import format_number

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from llmlab.served.loadtest import LoadTest

#: (row prefix, legend name, colour) of each latency drawn against throughput.
SERIES = [
    ("ttft", "TTFT", "#0969da"),
    ("itl", "ITL", "#bc4c00"),
    ("e2e", "E2E", "#8250df"),
]
#: (row key, column title, tooltip) of the table; the first column is the level.
COLUMNS = [
    ("request_throughput", "req/s", "completed requests / the level's wall time"),
    ("output_tok_s", "output tok/s", "output tokens (server's count) / wall time"),
    ("ttft_p50_ms", "TTFT p50", "time to first token"),
    ("ttft_p90_ms", "p90", ""),
    ("ttft_p99_ms", "p99", ""),
    ("itl_p50_ms", "ITL p50 (vLLM: all gaps)", "vLLM's ITL: every gap between chunks, pooled"),
    ("itl_p99_ms", "p99", ""),
    (
        "itl_req_p50_ms",
        "ITL/request p50 (AIPerf, GuideLLM)",
        "per-request mean gap between chunks: what AIPerf and GuideLLM call ITL",
    ),
    ("tpot_p50_ms", "TPOT p50", "(E2E − TTFT) / (output tokens − 1), per request"),
    ("e2e_p50_ms", "E2E p50", "request sent to last chunk"),
    ("e2e_p99_ms", "p99", ""),
    ("goodput", "goodput req/s", "requests/s meeting every SLO"),
    ("slo_attainment", "SLO met", "share of requests meeting every SLO"),
    ("failed", "failed", ""),
]
#: Which sample count stands behind each percentile column.
_COUNT_OF = {"ttft": "ttft_n", "itl": "itl_n", "itl_req": "itl_req_n", "tpot": "tpot_n"}
_COUNT_OF["e2e"] = "e2e_n"


def _metric(key: str) -> str | None:
    """``itl_req_p50_ms`` -> ``itl_req``; None for columns that are not percentiles."""
    if not key.endswith("_ms") or "_p" not in key:
        return None
    return key.rsplit("_p", 1)[0]


def _percentile_cell(row: dict[str, Any], key: str) -> tuple[str, str]:
    """(cell text, tooltip): the figure with its count, "n/a" where the sample is too small,
    and a flag where the figure rests on few samples."""
    from llmlab.served.loadtest import FEW_SAMPLES, min_samples

    metric = _metric(key)
    n = row.get(_COUNT_OF.get(metric or "", ""), 0) or 0
    q = int(key.rsplit("_p", 1)[1].removesuffix("_ms"))
    value = row.get(key)
    if value is None:
        need = min_samples(q)
        return ("n/a", f"n={n}: p{q} needs at least {need} samples") if n else ("–", "")
    flag = "*" if n < FEW_SAMPLES else ""
    return f"{format_number(value)}{flag}", f"n={n}"


def figure_data(test: LoadTest) -> list[dict[str, Any]]:
    """One scatter per latency: x output tok/s, y p50 (ms), whisker up to p99."""
    rows = [lv.row() | {"label": lv.label} for lv in test.levels]
    traces = []
    for key, name, color in SERIES:
        ok = [r for r in rows if r[f"{key}_p50_ms"] is not None]
        traces.append(
            dict(
                type="scatter",
                mode="lines+markers+text",
                name=f"{name} p50 (bar to p99)",
                x=[r["output_tok_s"] for r in ok],
                y=[r[f"{key}_p50_ms"] for r in ok],
                text=[r["label"] for r in ok],
                textposition="top left",
                marker=dict(color=color, size=9),
                line=dict(color=color),
                error_y=dict(
                    type="data",
                    symmetric=False,
                    # No whisker where the sample cannot resolve a p99 (see loadtest.min_samples).
                    array=[
                        (r[f"{key}_p99_ms"] or r[f"{key}_p50_ms"]) - r[f"{key}_p50_ms"] for r in ok
                    ],
                    arrayminus=[0] * len(ok),
                    color=color,
                    thickness=1.2,
                ),
                customdata=[
                    [
                        r["label"],
                        _hover(r[f"{key}_p90_ms"]),
                        _hover(r[f"{key}_p99_ms"]),
                        r["request_throughput"],
                        r[f"{key}_n"],
                    ]
                    for r in ok
                ],
                hovertemplate=(
                    f"{name}<br>%{{customdata[0]}} · n=%{{customdata[4]}}<br>p50 %{{y:.1f}} ms · "
                    "p90 %{customdata[1]} · p99 %{customdata[2]}<br>"
                    "%{x:.1f} output tok/s · %{customdata[3]:.2f} req/s<extra></extra>"
                ),
            )
        )
    return traces


def _hover(value: float | None) -> str:
    return "n/a (too few samples)" if value is None else f"{value:.1f}"


def build_figure(test: LoadTest) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure(data=figure_data(test))
    fig.update_layout(
        template="plotly_white",
        height=450,
        margin=dict(l=60, r=20, t=40, b=90),
        title=dict(text=f"{test.target}: latency vs throughput per {test.mode} level", x=0.01),
        xaxis_title="output token throughput (tok/s)",
        yaxis_title="latency (ms, log)",
        yaxis_type="log",
        # Below the axis title: above the plot it would cover the figure's title.
        legend=dict(orientation="h", y=-0.2, x=0, xanchor="left", yanchor="top"),
    )
    return fig


def header_html(test: LoadTest) -> str:
    slo = ", ".join(f"{k} ≤ {v * 1000:g} ms" for k, v in test.slo.items()) or "none given"
    what = "search levels" if test.search else "levels"
    done = f"{len(test.levels)}/{test.planned} {what}"
    arrivals = f" · {test.arrivals} arrivals (seed {test.seed})" if test.mode == "rate" else ""
    saturation = (
        f"<div><b>Saturation:</b> {esc(test.saturation_note)}</div>" if test.saturation_note else ""
    )
    return (
        f"<div><b>Load test</b> · {esc(test.model_id)} at {esc(test.server)} · {done} · "
        f"{test.requests} requests per level · max {test.max_tokens} tokens · "
        f"{esc(test.workload)}{arrivals} · SLO: {esc(slo)} · <i>{esc(test.status)}</i></div>"
        + saturation
    )


def table_html(test: LoadTest) -> str:
    first = "rate req/s" if test.mode == "rate" else "concurrency"
    head = f"<th>{first}</th>" + "".join(
        f"<th title='{esc(tip)}'>{esc(title)}</th>" for _, title, tip in COLUMNS
    )
    rows = []
    for lv in test.levels:
        r = lv.row()
        level = f"{lv.rate:g}" if lv.rate is not None else str(lv.concurrency)
        cells = [f"<td>{esc(level)}</td>"]
        for key, _, _ in COLUMNS:
            v = r.get(key)
            if _metric(key):
                text, tip = _percentile_cell(r, key)
                cells.append(f"<td title='{esc(tip)}'>{esc(text)}</td>")
            elif v is None:
                cells.append("<td>–</td>")
            elif key == "slo_attainment":
                cells.append(f"<td>{100 * v:.0f}%</td>")
            elif isinstance(v, float):
                cells.append(f"<td>{format_number(v)}</td>")
            else:
                cells.append(f"<td>{esc(str(v))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    notes = "".join(f"<div class='llmlab-warning'>⚠ {esc(w)}</div>" for w in test.warnings)
    errors = [(lv.label, lv.row()["errors"]) for lv in test.levels if lv.row()["errors"]]
    notes += "".join(f"<div class='llmlab-warning'>{esc(c)}: {esc(e)}</div>" for c, e in errors)
    counts = "; ".join(
        f"{lv.label}: {lv.row()['ttft_n']} requests, {lv.row()['itl_n']} gaps" for lv in test.levels
    )
    legend = (
        "<div class='llmlab-stats'>times in ms, measured on the client from streamed chunks "
        "(vLLM bench serve definitions: TTFT to the first text chunk; ITL two ways: vLLM's "
        "pools every gap between chunks, AIPerf's and GuideLLM's is each request's mean gap; "
        "TPOT = (E2E − TTFT)/(tokens − 1); goodput = requests/s meeting every SLO). "
        "Samples behind the percentiles: "
        f"{esc(counts) or 'none yet'}. n/a: too few samples for that percentile (p90 needs "
        "10, p99 100); * fewer than 20 samples.</div>"
    )
    return f"<table class='llmlab-loadtest'><tr>{head}</tr>{''.join(rows)}</table>{legend}{notes}"


def loadtest_html(test: LoadTest, *, with_plotly_js: bool = True) -> str:
    """Works with no network: plotly.js is inlined unless ``with_plotly_js`` is False
    (another chart of the same page or notebook carries it: see llmlab.html)."""
    fig = build_figure(test)
    uid = f"llmlab-load-{uuid.uuid4().hex[:8]}"
    plot = plotly_chart(fig, uid, with_plotly_js=with_plotly_js)
    return card(header_html(test) + plot + table_html(test))


def loadtest_text(test: LoadTest) -> str:
    first = "rate" if test.mode == "rate" else "conc"
    lines = [
        f"load test {test.model_id} at {test.server}: {test.status}, "
        f"{test.requests} requests per level, {test.workload}",
        f"{first:>6} {'req/s':>7} {'tok/s':>8} {'n':>4} {'TTFT p50':>9} {'p99':>8} "
        f"{'ITL p50':>8} {'p99':>7} {'ITL/req':>8} {'E2E p50':>8} {'goodput':>8}",
    ]
    for lv in test.levels:
        r = lv.row()

        def ms(key: str, r: dict = r) -> str:
            return _percentile_cell(r, key)[0]

        good = "–" if r["goodput"] is None else f"{r['goodput']:.2f}"
        level = f"{lv.rate:g}" if lv.rate is not None else str(lv.concurrency)
        lines.append(
            f"{level:>6} {r['request_throughput']:>7.2f} {r['output_tok_s']:>8.1f} "
            f"{r['ttft_n']:>4} {ms('ttft_p50_ms'):>9} {ms('ttft_p99_ms'):>8} "
            f"{ms('itl_p50_ms'):>8} {ms('itl_p99_ms'):>7} {ms('itl_req_p50_ms'):>8} "
            f"{ms('e2e_p50_ms'):>8} {good:>8}"
        )
    lines.append(
        "ms; ITL = vLLM's (all gaps pooled), ITL/req = AIPerf's/GuideLLM's (per-request mean); "
        "n = requests behind TTFT/E2E; n/a = too few samples (p99 needs 100); * = under 20"
    )
    if test.saturation_note:
        lines.append(f"saturation: {test.saturation_note}")
    lines += [f"warning: {w}" for w in test.warnings]
    return "\n".join(lines)
