"""How a sweep looks: the plotly figure (shared by the static HTML
and the live widget), the table with every spread, and a plain-text table for terminals."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmlab.html import card, esc, json_for_script, plotly_chart
from llmlab.measure.stats import count, format_number
from llmlab.tradeoff.axes import X_AXES, Y_AXES, Axis, check_axes, parse_axes  # noqa: F401
from llmlab.tradeoff.result import APPROXIMATING, KL_PRESERVING, PRESERVING

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from llmlab.tradeoff.result import Sweep, SweepPoint

HERE = Path(__file__).parent


#: Label sides tried in turn so nearby points' labels spread out; a side label is used only
#: away from the plot's edges, where it would be cut (see _label_positions).
_LABEL_SIDES = ("center", "right", "left")
COLORS = {PRESERVING: "#1a7f37", APPROXIMATING: "#bc4c00", None: "#8c959f"}


# -- the figure -------------------------------------------------------------------------------
def _plotted(sweep: Sweep, xa: Axis, ya: Axis) -> list[tuple[int, SweepPoint, dict]]:
    out = []
    for i, p in enumerate(sweep.points):
        row = p.row()
        if p.status == "ok" and row.get(xa.column) is not None and row.get(ya.column) is not None:
            out.append((i, p, row))
    return out


def pareto_front(points: list[tuple[float, float]], x_low: bool, y_low: bool) -> list[int]:
    """Indices of the points no other point beats on both axes, ordered along x."""
    sx, sy = (1 if x_low else -1), (1 if y_low else -1)
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            sx * x2 <= sx * x and sy * y2 <= sy * y and (x2, y2) != (x, y)
            for j, (x2, y2) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def hover_text(p: SweepPoint, sweep: Sweep) -> str:
    """Every metric of a point, with spreads, for the tooltip (plotly renders <br>)."""
    lat = p.latency
    lines = [f"<b>{esc(p.name)}</b>"]
    label = p.measured_label or "quality not measured"
    claim = f" (registry claims {p.claimed_label})" if p.claimed_label else ""
    lines.append(("⚠ " if p.label_disagrees else "") + f"measured: {label}{claim}")
    if speedup := speedup_text(p, sweep.baseline):
        lines.append(f"speed-up over the baseline, end to end: {speedup}")
    if lat:
        lines += [
            f"TTFT {lat.ttft_s.format('ms', 1e3)}",
            f"TPOT {lat.tpot_s.format('ms', 1e3)}",
            f"decode {lat.decode_tps.format('tok/s')}",
            f"end-to-end {lat.e2e_s.format('s')}",
        ]
    if p.usd_per_mtok:
        lines.append(f"$/1M tokens {p.usd_per_mtok.format('', 1, 3)}")
    if p.roofline and p.roofline.n:
        lines.append(f"roofline {p.roofline.format('%', 100)}")
    mem = [
        f"{k} {format_number(v / 2**20)} MB"
        for k, v in (("peak", p.peak_memory_bytes), ("weights", p.weight_bytes), ("KV", p.kv_bytes))
        if v is not None
    ]
    if mem:
        lines.append(" · ".join(mem))
    if p.kl and p.kl.n:
        lines.append(f"KL {p.kl.format('nats', of='positions')}, p90 {format_number(p.kl.p90)}")
    if p.top1 and p.top1.n:
        lines.append(f"top-1 agreement {p.top1.format('%', 100, of='prompts')}")
    if p.greedy_matches is not None:
        same, n = sum(p.greedy_matches), len(p.greedy_matches)
        lines.append(f"greedy identical on {same} of {count(n, 'prompt')}")
    if p.perplexity is not None:
        lines.append(f"perplexity {p.perplexity:.3f} ({p.perplexity_tokens} tokens)")
    if p.acceptance_rate and p.acceptance_rate.n:
        lines.append(f"acceptance {p.acceptance_rate.format('', 1)}")
    if p.nondeterministic:
        lines.append("⚠ repeated greedy runs differed")
    return "<br>".join(lines)


def build_figure(sweep: Sweep, axes: tuple[str, str] | None = None) -> go.Figure:
    """The tradeoff scatter: one point per configuration with IQR error bars, coloured by the
    *measured* label, a red ring where it disagrees with the registry, and the Pareto front."""
    import plotly.graph_objects as go

    x_key, y_key = check_axes(axes or sweep.axes)
    xa, ya = X_AXES[x_key], Y_AXES[y_key]
    plotted = _plotted(sweep, xa, ya)
    positive = [r[ya.column] for _, _, r in plotted if r[ya.column] and r[ya.column] > 0]
    floor = min([*positive, KL_PRESERVING]) / 10 if ya.log else None

    def yv(v: float) -> float:
        return max(v, floor) if ya.log and floor else v

    all_x = [r[xa.column] for _, _, r in plotted]
    x_span = (min(all_x), max(all_x)) if all_x else (0.0, 0.0)
    fig = go.Figure()
    for label, name in (
        (PRESERVING, "output-preserving (measured)"),
        (APPROXIMATING, "approximating (measured)"),
        (None, "quality not measured"),
    ):
        group = [(i, p, r) for i, p, r in plotted if p.measured_label == label]
        if not group:
            continue
        xs = [r[xa.column] for _, _, r in group]
        ys = [yv(r[ya.column]) for _, _, r in group]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="markers+text",
                name=name,
                text=[("⚠ " if p.label_disagrees else "") + p.name for _, p, _ in group],
                # Alternate label positions: nearby points are common; the repeated baseline
                # (often on top of the first) always goes below.
                textposition=_label_positions(group, xs, x_span),
                cliponaxis=False,
                customdata=[i for i, _, _ in group],
                hovertext=[hover_text(p, sweep) for _, p, _ in group],
                hoverinfo="text",
                marker=dict(
                    size=13,
                    color=COLORS[label],
                    symbol=[
                        "circle-open" if p.repeat_of_baseline else "circle" for _, p, _ in group
                    ],
                    line=dict(
                        width=[3 if p.label_disagrees else 1 for _, p, _ in group],
                        color=["#cf222e" if p.label_disagrees else "#ffffff" for _, p, _ in group],
                    ),
                ),
                error_x=_error_bars(group, xa) if xa.spread else None,
                error_y=_error_bars(group, ya, yv) if ya.spread else None,
            )
        )
    if len(plotted) >= 2:
        pts = [(r[xa.column], yv(r[ya.column])) for _, p, r in plotted if not p.repeat_of_baseline]
        front = pareto_front(pts, xa.better == "low", ya.better == "low")
        fig.add_trace(
            go.Scatter(
                x=[pts[i][0] for i in front],
                y=[pts[i][1] for i in front],
                mode="lines",
                line=dict(color="#0969da", dash="dash", shape="hv" if len(front) > 1 else "linear"),
                name="Pareto front",
                hoverinfo="skip",
            )
        )
    if ya.log and plotted:
        fig.add_hline(
            y=KL_PRESERVING,
            line=dict(color="#57606a", dash="dot", width=1),
            annotation_text="KL 1e-4: output-preserving below (with identical greedy text)",
            annotation_position="bottom right",
            annotation_font_size=10,
        )
    title = (
        f"{sweep.model} on {sweep.device}: {len(sweep.points)} of {len(sweep.configs) + 1} measured"
    )
    if sweep.status != "running":
        title += f" · {sweep.status}"
    fig.update_layout(
        template="plotly_white",
        title=dict(text=esc(title), font_size=14),
        height=460,
        margin=dict(l=60, r=20, t=50, b=80),
        legend=dict(orientation="h", y=-0.3, yanchor="top"),
        xaxis_title=xa.title + ("  (better ←)" if xa.better == "low" else "  (better →)"),
        yaxis_title=ya.title + ("  (better ↓)" if ya.better == "low" else "  (better ↑)"),
        hoverlabel=dict(align="left", font_size=11),
        clickmode="event",
    )
    if ya.log:
        fig.update_yaxes(type="log", exponentformat="power")
    if ya.better == "low":
        fig.update_yaxes(autorange="reversed" if not ya.log else None)
    # No axes without points: an empty frame with made-up ranges says nothing.
    fig.update_xaxes(visible=bool(plotted))
    fig.update_yaxes(visible=bool(plotted))
    if not plotted:
        fig.add_annotation(
            text=_empty_note(sweep, xa, ya),
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
            font=dict(size=13, color="#57606a"),
        )
    return fig


def _label_positions(group, xs: list[float], x_span: tuple[float, float]) -> list[str]:
    """Above / below in turn, sides in turn (nearby points are common), but no label to the
    side of a point in the outer fifth of the x range, where it would be cut at the edge; the
    repeated baseline (often on top of the first) always goes below."""
    lo, hi = x_span
    width = (hi - lo) or 1.0
    out = []
    for k, ((_, p, _), x) in enumerate(zip(group, xs)):
        if p.repeat_of_baseline:
            out.append("bottom center")
            continue
        side = _LABEL_SIDES[(k // 2) % len(_LABEL_SIDES)]
        where = (x - lo) / width
        if (side == "left" and where < 0.2) or (side == "right" and where > 0.8):
            side = "center"
        out.append(f"{'top' if k % 2 == 0 else 'bottom'} {side}")
    return out


def _empty_note(sweep: Sweep, xa: Axis, ya: Axis) -> str:
    if sweep.status == "running":
        return "each configuration appears here when it has been measured"
    if sweep.points:
        return esc(f"no configuration has both {xa.key} and {ya.key} figures")
    return "no configuration was measured"


def _error_bars(group, axis: Axis, transform=lambda v: v) -> dict[str, Any]:
    """Each point's bar from the statistic the point is (``_lo``/``_hi``: IQR around a median,
    95% CI around a mean), so a point never sits outside its own bar."""
    plus, minus = [], []
    for _, _, r in group:
        v, lo, hi = r[axis.column], r.get(axis.column + "_lo"), r.get(axis.column + "_hi")
        tv = transform(v)
        plus.append(max(0.0, transform(hi) - tv) if hi is not None else 0.0)
        minus.append(max(0.0, tv - transform(lo)) if lo is not None else 0.0)
    return dict(type="data", array=plus, arrayminus=minus, thickness=1.2, width=4, color="#57606a")


# -- the table --------------------------------------------------------------------------------
#: Shown by default: what a reader compares first. Header, row() column, has a spread.
COLUMNS = [
    ("TTFT ms", "ttft_ms", True),
    ("TPOT ms", "tpot_ms", True),
    ("KL mean", "kl", True),
    ("top-1", "top1", True),
]
#: In a second table under "more figures" (and every column in ``sweep.to_pandas()``).
MORE_COLUMNS = [
    ("decode tok/s", "decode_tps", True),  # 1 / TPOT: the main table's TPOT says it
    ("$ / 1M tok", "usd_per_mtok", True),
    ("roofline %", "roofline_pct", True),
    ("accept.", "acceptance", True),
    ("perplexity", "perplexity", False),
    ("peak MB", "peak_mem_mb", False),
    ("weights MB", "weight_mb", False),
    ("KV MB", "kv_mb", False),
]
_SHORT_LABEL = {PRESERVING: "preserving", APPROXIMATING: "approx.", None: "–"}


def _cell(row: dict, column: str, spread: bool = True) -> str:
    """The headline; under it its bar (IQR of a median, 95% CI of a mean), with the other
    figures and n in the tooltip (keeps columns narrow)."""
    v = row.get(column)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "<td>–</td>"
    main = format_number(v)
    if not spread or row.get(column + "_q1") is None:
        return f"<td>{main}</td>"
    q1, q3, p90 = (format_number(row[column + s]) for s in ("_q1", "_q3", "_p90"))
    n, bar = row[column + "_n"], row.get(column + "_bar")
    if row.get(column + "_lo") is None:  # one sample: no bar
        return f'<td title="n={n}">{main}<br><small>n={n}</small></td>'
    lo, hi = format_number(row[column + "_lo"]), format_number(row[column + "_hi"])
    if bar == "IQR":
        tip = f"median · IQR {q1}–{q3} · p90 {p90} · n={n}"
    else:
        tip = f"mean · {bar} {lo}–{hi} · IQR {q1}–{q3} · p90 {p90} · n={n}"
    return f'<td title="{esc(tip)}">{main}<br><small>{lo}–{hi}</small></td>'


def speedup_text(p: SweepPoint, baseline: SweepPoint | None) -> str:
    """``"1.41× (decode 5.20×, TTFT 0.48×)"``: end to end first, medians over the runs."""
    up = p.speedup_over(baseline)
    if up is None:
        return ""
    beside = [f"{k} {up[k]:.2f}×" for k in ("decode", "ttft") if up[k] is not None]
    per = " per token" if up["per_token"] else ""
    return f"{up['e2e']:.2f}×{per} ({', '.join(beside).replace('ttft', 'TTFT')})"


def _speedup_cell(p: SweepPoint, baseline: SweepPoint | None) -> str:
    up = p.speedup_over(baseline)
    if up is None:
        return "<td>–</td>"
    beside = " · ".join(
        f"{name} {up[k]:.2f}×" for k, name in (("decode", "decode"), ("ttft", "TTFT")) if up[k]
    )
    per = " per token" if up["per_token"] else ""
    tip = "the baseline's median time over this configuration's (> 1: faster); end to end" + (
        " per output token (the answers differ in length)" if per else ""
    )
    return f'<td title="{esc(tip)}"><b>{up["e2e"]:.2f}×</b>{per}<br><small>{beside}</small></td>'


def _label_cell(p: SweepPoint) -> str:
    measured, claimed = p.measured_label, p.claimed_label
    text = _SHORT_LABEL[measured]
    tip = f"measured: {measured or 'not measured'} · registry: {claimed or '–'}"
    if p.label_disagrees:
        text = f'<span class="llmlab-sw-flag">⚠ {text}</span>'
    elif measured:
        text = f'<span style="color:{COLORS[measured]}">{text}</span>'
    return f'<td title="{esc(tip)}">{text}<br><small>registry: {_SHORT_LABEL[claimed]}</small></td>'


def _name_cell(p: SweepPoint) -> str:
    # Break long combinations after their separators, not mid-word.
    name = esc(p.name).replace(",", ",<wbr>").replace("+", "+<wbr>")
    return f"<td><b>{name}</b></td>"


def table_html(sweep: Sweep) -> str:
    """The main figures in a table that fits a notebook's output (~900 px); the rest under
    "more figures". Spreads: IQR under each headline, p90 and n in the cell's tooltip."""
    heads = [
        "configuration",
        "label",
        "speed-up, end to end",
        *(h for h, _, _ in COLUMNS),
        "greedy same",
        "note",
    ]
    more_heads = ["configuration", *(h for h, _, _ in MORE_COLUMNS)]
    rows, more_rows = [], []
    for i, p in enumerate(sweep.points):
        r = p.row()
        greedy = (
            f"{sum(p.greedy_matches)}/{len(p.greedy_matches)}"
            if p.greedy_matches is not None
            else "–"
        )
        note = (
            p.error
            or p.quality_note
            or ("repeated greedy runs differed" if p.nondeterministic else "")
        )
        cls = "llmlab-sw-failed" if p.status != "ok" else ""
        rows.append(
            f'<tr class="{cls}" data-index="{i}">{_name_cell(p)}{_label_cell(p)}'
            + _speedup_cell(p, sweep.baseline)
            + "".join(_cell(r, c, sp) for _, c, sp in COLUMNS)
            + f"<td>{greedy}</td><td class='llmlab-sw-note'>{esc(note)}</td></tr>"
        )
        more_rows.append(
            f'<tr class="{cls}">{_name_cell(p)}'
            + "".join(_cell(r, c, sp) for _, c, sp in MORE_COLUMNS)
            + "</tr>"
        )

    def table(head: list[str], body: list[str]) -> str:
        ths = "".join(f"<th>{esc(h)}</th>" for h in head)
        return f'<table class="llmlab-sw-table"><tr>{ths}</tr>{"".join(body)}</table>'

    more = ", ".join(h for h, _, _ in MORE_COLUMNS)
    legend = (
        '<div class="llmlab-stats">Under each figure its range: the IQR of a median (times, '
        "cost), the 95% confidence interval of a mean (KL, top-1, acceptance); "
        "n and the rest in the tooltip.</div>"
    )
    return (
        f'<div class="llmlab-sw-scroll">{table(heads, rows)}</div>{legend}'
        f'<details class="llmlab-sw-more"><summary>more figures: {esc(more)}</summary>'
        f'<div class="llmlab-sw-scroll">{table(more_heads, more_rows)}</div></details>'
    )


def header_html(sweep: Sweep) -> str:
    s = sweep.settings
    facts = [
        f"{count(len(sweep.prompts), 'prompt')} × {count(sweep.repeats, 'repeat')} "
        f"(+{sweep.warmup} warm-up)",
        f"greedy, {s.get('max_new_tokens')} new tokens",
        f"{sweep.device}/{sweep.dtype}",
    ]
    if sweep.device.startswith("cpu") and sweep.threads:
        facts.append(count(sweep.threads, "torch thread"))
        if sweep.load_average is not None:
            from llmlab.models.threads import cpu_count

            facts.append(f"load average {sweep.load_average:.1f} on {cpu_count()} CPUs at start")
    if sweep.bandwidth_bytes_s:
        facts.append(f"measured read bandwidth {sweep.bandwidth_bytes_s / 1e9:.1f} GB/s")
    if sweep.usd_per_hour is not None:
        facts.append(f"price ${sweep.usd_per_hour:g}/h")
    if sweep.seconds:
        facts.append(f"{sweep.seconds:.0f} s")
    warn = "".join(f'<div class="llmlab-note">⚠ {esc(w)}</div>' for w in sweep.warnings)
    return (
        f"<div><b>Tradeoff sweep · {esc(sweep.model)}</b> · {esc(sweep.status)}</div>"
        f'<div class="llmlab-stats">{esc(" · ".join(facts))}</div>{warn}'
    )


TABLE_CSS = """
.llmlab-sw-scroll{overflow-x:auto}
.llmlab-card table.llmlab-sw-table td{vertical-align:top;white-space:nowrap;padding:2px 6px}
.llmlab-card table.llmlab-sw-table th{white-space:normal;vertical-align:bottom;padding:2px 6px}
.llmlab-card table.llmlab-sw-table td:first-child{white-space:normal;max-width:190px}
.llmlab-sw-more summary{cursor:pointer;color:#57606a;font-size:12px;margin:4px 0}
.llmlab-sw-table small{color:#57606a}
.llmlab-sw-failed td{color:#cf222e}
.llmlab-sw-flag{color:#cf222e;font-weight:600}
.llmlab-card td.llmlab-sw-note{white-space:normal;min-width:120px;max-width:220px;color:#57606a}
.llmlab-sw-compare{display:grid;grid-template-columns:1fr 1fr;gap:10px;margin-top:8px}
.llmlab-sw-compare>div{border:1px solid #eaeef2;border-radius:6px;padding:6px}
.llmlab-sw-compare h4{margin:0 0 4px 0;font-size:12px}
"""


def compare_html(sweep: Sweep, index: int | None) -> str:
    """The selected point's texts next to the reference's, prompt by prompt."""
    if index is None or not 0 <= index < len(sweep.points):
        return (
            '<div class="llmlab-stats">Click a point to see its text next to the reference.</div>'
        )
    p = sweep.points[index]
    parts = []
    for j, prompt in enumerate(sweep.prompts):
        ref = sweep.reference_texts[j] if j < len(sweep.reference_texts) else "–"
        text = p.texts[j] if j < len(p.texts) else "–"
        same = p.greedy_matches[j] if p.greedy_matches and j < len(p.greedy_matches) else None
        mark = (
            ""
            if same is None
            else (" ✓ identical" if same else f" ✗ differs from token {p.first_divergence[j]}")
        )
        parts.append(
            f'<div class="llmlab-prompt">{esc(prompt)}{esc(mark)}</div>'
            '<div class="llmlab-sw-compare">'
            f'<div><h4>reference (baseline)</h4><div class="llmlab-text">{esc(ref)}</div></div>'
            f'<div><h4>{esc(p.name)}</h4><div class="llmlab-text">{esc(text)}</div></div></div>'
        )
    return "".join(parts)


def sweep_payload(sweep: Sweep) -> dict[str, Any]:
    """Plain JSON of a sweep: the table rows plus the texts (for the static page's clicks)."""
    return {
        "rows": [p.row() for p in sweep.points],
        "names": [p.name for p in sweep.points],
        "prompts": sweep.prompts,
        "reference": sweep.reference_texts,
        "texts": [p.texts for p in sweep.points],
        "matches": [p.greedy_matches for p in sweep.points],
        "status": sweep.status,
        "warnings": sweep.warnings,
    }


def sweep_html(sweep: Sweep, axes: tuple[str, str], *, with_plotly_js: bool = True) -> str:
    """Works with no network: plotly.js (4.8 MB) is inlined unless ``with_plotly_js`` is
    False (another chart of the same page or notebook carries it: see llmlab.html)."""
    import uuid

    fig = build_figure(sweep, axes)
    uid = "llmlab-sweep-" + uuid.uuid4().hex[:10]
    chart = plotly_chart(fig, uid, with_plotly_js=with_plotly_js)
    data = json_for_script(sweep_payload(sweep))
    script = (HERE / "static_page.js").read_text("utf-8")
    panel = f'<div id="{uid}-texts">{compare_html(sweep, first_other_point(sweep))}</div>'
    return card(
        header_html(sweep)
        + chart
        + table_html(sweep)
        + panel
        + f'<script type="application/json" id="{uid}-data">{data}</script>'
        + f'<script>{script}\nllmlabSweepPage("{uid}");</script>',
        css=TABLE_CSS,
    )


def first_other_point(sweep: Sweep) -> int | None:
    for i, p in enumerate(sweep.points):
        if not p.is_baseline and p.status == "ok":
            return i
    return 0 if sweep.points else None


def text_table(sweep: Sweep) -> str:
    lines = [sweep.summary(), *("! " + w for w in sweep.warnings)]
    for p in sweep.points:
        r = p.row()
        if p.status != "ok":
            lines.append(f"  {p.name:<28} {p.status}: {p.error}")
            continue
        bits = [f"TPOT {_plain(r, 'tpot_ms')} ms", f"TTFT {_plain(r, 'ttft_ms')} ms"]
        if speedup := speedup_text(p, sweep.baseline):
            bits.insert(0, f"end to end {speedup}")
        if r["kl"] is not None:
            bits.append(f"KL {_plain(r, 'kl')}")
        if r["greedy_match"] is not None:
            bits.append(f"greedy same {100 * r['greedy_match']:.0f}%")
        bits.append(f"{r['measured'] or '?'}" + (" (!= registry)" if p.label_disagrees else ""))
        lines.append(f"  {p.name:<28} " + " · ".join(bits))
    return "\n".join(lines)


def _plain(row: dict, column: str) -> str:
    if row.get(column) is None:
        return "–"
    if row.get(column + "_lo") is None:
        return f"{format_number(row[column])} [n={row.get(column + '_n', 1)}]"
    lo, hi = format_number(row[column + "_lo"]), format_number(row[column + "_hi"])
    return f"{format_number(row[column])} [{row[column + '_bar']} {lo}–{hi}]"
