"""How a load sweep looks: latency against throughput (one point per concurrency level, p50 with
a whisker to p99), and the table of percentiles. The same figure feeds the live widget and the
offline HTML."""

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
COLUMNS = [
    ("concurrency", "concurrency"),
    ("request_throughput", "req/s"),
    ("output_tok_s", "output tok/s"),
    ("ttft_p50_ms", "TTFT p50"),
    ("ttft_p90_ms", "p90"),
    ("ttft_p99_ms", "p99"),
    ("itl_p50_ms", "ITL p50"),
    ("itl_p90_ms", "p90"),
    ("itl_p99_ms", "p99"),
    ("tpot_p50_ms", "TPOT p50"),
    ("e2e_p50_ms", "E2E p50"),
    ("e2e_p99_ms", "p99"),
    ("goodput", "goodput req/s"),
    ("slo_attainment", "SLO met"),
    ("failed", "failed"),
]


def figure_data(test: LoadTest) -> list[dict[str, Any]]:
    """One scatter per latency: x output tok/s, y p50 (ms), whisker up to p99."""
    rows = [lv.row() for lv in test.levels]
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
                text=[f"c={r['concurrency']}" for r in ok],
                textposition="top left",
                marker=dict(color=color, size=9),
                line=dict(color=color),
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=[r[f"{key}_p99_ms"] - r[f"{key}_p50_ms"] for r in ok],
                    arrayminus=[0] * len(ok),
                    color=color,
                    thickness=1.2,
                ),
                customdata=[
                    [
                        r["concurrency"],
                        r[f"{key}_p90_ms"],
                        r[f"{key}_p99_ms"],
                        r["request_throughput"],
                    ]
                    for r in ok
                ],
                hovertemplate=(
                    f"{name}<br>concurrency %{{customdata[0]}}<br>p50 %{{y:.1f}} ms · "
                    "p90 %{customdata[1]:.1f} · p99 %{customdata[2]:.1f}<br>"
                    "%{x:.1f} output tok/s · %{customdata[3]:.2f} req/s<extra></extra>"
                ),
            )
        )
    return traces


def build_figure(test: LoadTest) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure(data=figure_data(test))
    fig.update_layout(
        template="plotly_white",
        height=450,
        margin=dict(l=60, r=20, t=40, b=90),
        title=dict(text=f"{test.target}: latency vs throughput per concurrency", x=0.01),
        xaxis_title="output token throughput (tok/s)",
        yaxis_title="latency (ms, log)",
        yaxis_type="log",
        # Below the axis title: above the plot it would cover the figure's title.
        legend=dict(orientation="h", y=-0.2, x=0, xanchor="left", yanchor="top"),
    )
    return fig


def header_html(test: LoadTest) -> str:
    slo = ", ".join(f"{k} ≤ {v * 1000:g} ms" for k, v in test.slo.items()) or "none given"
    done = f"{len(test.levels)}/{len(test.concurrency)} levels"
    return (
        f"<div><b>Load test</b> · {esc(test.model_id)} at {esc(test.server)} · {done} · "
        f"{test.requests} requests per level · max {test.max_tokens} tokens · "
        f"{len(test.prompts)} prompts · SLO: {esc(slo)} · <i>{esc(test.status)}</i></div>"
    )


def table_html(test: LoadTest) -> str:
    head = "".join(f"<th>{esc(title)}</th>" for _, title in COLUMNS)
    rows = []
    for lv in test.levels:
        r = lv.row()
        cells = []
        for key, _ in COLUMNS:
            v = r.get(key)
            if v is None:
                cells.append("<td>–</td>")
            elif key == "slo_attainment":
                cells.append(f"<td>{100 * v:.0f}%</td>")
            elif isinstance(v, float):
                cells.append(f"<td>{format_number(v)}</td>")
            else:
                cells.append(f"<td>{esc(str(v))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    notes = "".join(f"<div class='llmlab-warning'>⚠ {esc(w)}</div>" for w in test.warnings)
    errors = [(lv.concurrency, lv.row()["errors"]) for lv in test.levels if lv.row()["errors"]]
    notes += "".join(f"<div class='llmlab-warning'>c={c}: {esc(e)}</div>" for c, e in errors)
    legend = (
        "<div class='llmlab-stats'>times in ms, measured on the client from streamed chunks "
        "(vLLM bench serve definitions: TTFT to the first text chunk, ITL between chunks, TPOT "
        "= (E2E − TTFT)/(tokens − 1), goodput = requests/s meeting every SLO)</div>"
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
    lines = [
        f"load test {test.model_id} at {test.server}: {test.status}, "
        f"{test.requests} requests per level",
        f"{'conc':>5} {'req/s':>7} {'tok/s':>8} {'TTFT p50':>9} {'p99':>8} {'ITL p50':>8} "
        f"{'p99':>7} {'E2E p50':>8} {'goodput':>8}",
    ]
    for lv in test.levels:
        r = lv.row()

        def ms(key: str, r: dict = r) -> str:
            return "–" if r[key] is None else f"{r[key]:.0f}"

        good = "–" if r["goodput"] is None else f"{r['goodput']:.2f}"
        lines.append(
            f"{lv.concurrency:>5} {r['request_throughput']:>7.2f} {r['output_tok_s']:>8.1f} "
            f"{ms('ttft_p50_ms'):>9} {ms('ttft_p99_ms'):>8} {ms('itl_p50_ms'):>8} "
            f"{ms('itl_p99_ms'):>7} {ms('e2e_p50_ms'):>8} {good:>8}"
        )
    lines += [f"warning: {w}" for w in test.warnings]
    return "\n".join(lines)
