"""Static, self-contained HTML of an attention result (exports, reports, no kernel, no network).

No script: a head view drawn as SVG (hover a line for its weight), the layer × head grid as
inline PNG thumbnails, the per-head statistics table, and for a comparison the difference grid
and the ranking of changed heads. Every token goes through ``esc``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from llmlab.attention import encode
from llmlab.html import card, esc

if TYPE_CHECKING:
    from llmlab.attention.result import AttentionComparison, AttentionResult

#: The static head view draws at most this many tokens (the live view scrolls through all).
STATIC_TOKENS = 160
#: One colour per head, cycled (the same palette as attention.js).
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]  # fmt: skip

CSS = """
.llmlab-att h4{margin:10px 0 4px;font-size:13px}
.llmlab-att .grid{border-collapse:collapse}
.llmlab-att .grid td,.llmlab-att .grid th{padding:1px;border:none;text-align:center;font-size:10px;
  color:#57606a;font-weight:normal}
.llmlab-att .grid img{width:40px;height:40px;image-rendering:pixelated;display:block;
  border:1px solid #eaeef2}
.llmlab-att .kv{border-bottom:2px solid #d0d7de!important}
.llmlab-att .stats{max-height:320px;overflow:auto;display:inline-block}
.llmlab-att .stats td{font-variant-numeric:tabular-nums}
.llmlab-att .hv{max-height:520px;overflow:auto;border:1px solid #eaeef2}
.llmlab-att .hv text{font-family:ui-monospace,Menlo,monospace;font-size:11px}
"""


def _token_label(token: str) -> str:
    return token.replace("\n", "↵").replace("\t", "→")


def _head_view_svg(result: AttentionResult, layer: int, heads: list[int]) -> str:
    n = min(result.n_tokens, STATIC_TOKENS)
    row_h, col_w, gap = 16, 150, 220
    width, height = 2 * col_w + gap, n * row_h + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">']
    k = 6 if len(heads) == 1 else 3
    for head in heads:
        a = result.captured.weights[layer, head, :n, :n].float()
        values, index = a.topk(min(k, n), dim=-1)
        color = PALETTE[head % len(PALETTE)]
        for q in range(n):
            for v, key in zip(values[q].tolist(), index[q].tolist()):
                if v < 0.02:
                    continue
                y1, y2 = q * row_h + 12, key * row_h + 12
                tip = (
                    f"L{layer} H{head}: {_token_label(result.tokens[q])!r} → "
                    f"{_token_label(result.tokens[key])!r} {v:.3f}"
                )
                parts.append(
                    f'<line x1="{col_w}" y1="{y1}" x2="{col_w + gap}" y2="{y2}" '
                    f'stroke="{color}" stroke-width="2" stroke-opacity="{min(1.0, v):.3f}">'
                    f"<title>{esc(tip)}</title></line>"
                )
    for i in range(n):
        y = i * row_h + 16
        fill = "#1f2328" if i < result.n_prompt else "#8250df"
        label = esc(_token_label(result.tokens[i])[:18])
        parts.append(
            f'<text x="{col_w - 6}" y="{y}" text-anchor="end" fill="{fill}">{label}</text>'
            f'<text x="{col_w + gap + 6}" y="{y}" fill="{fill}">{label}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _grid(
    result: AttentionResult, codes: np.ndarray, cmap: np.ndarray, titles: np.ndarray | None
) -> str:
    group = result.n_heads // result.n_kv_heads
    head_row = "".join(
        f'<th colspan="{group}" class="kv">KV {g}</th>' for g in range(result.n_kv_heads)
    )
    sub_row = "".join(f"<th>h{h}</th>" for h in range(result.n_heads))
    rows = [f"<tr><th></th>{head_row}</tr><tr><th></th>{sub_row}</tr>"]
    for layer in range(result.n_layers):
        cells = []
        for head in range(result.n_heads):
            title = f"L{layer} H{head}" + (
                f" · {titles[layer, head]}" if titles is not None else ""
            )
            uri = encode.png_data_uri(codes[layer, head], cmap)
            cells.append(f'<td><img src="{uri}" title="{esc(title)}" alt="{esc(title)}"></td>')
        rows.append(f"<tr><th>L{layer}</th>{''.join(cells)}</tr>")
    return f'<table class="grid">{"".join(rows)}</table>'


def _stats_titles(result: AttentionResult) -> np.ndarray:
    s = result.stats()
    out = np.empty((result.n_layers, result.n_heads), dtype=object)
    for layer in range(result.n_layers):
        for head in range(result.n_heads):
            out[layer, head] = (
                f"KV {result.kv_head(head)} · entropy {s['entropy'][layer, head]:.2f} bits · "
                f"sink {s['sink'][layer, head]:.2f} · prev {s['prev'][layer, head]:.2f} · "
                f"distance {s['distance'][layer, head]:.1f}"
            )
    return out


def _stats_table(result: AttentionResult) -> str:
    frame = result.to_pandas()
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = "".join(
            f"<td>{v:.3f}</td>" if isinstance(v, float) else f"<td>{v}</td>" for v in row
        )
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="stats"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def _ranking_table(comparison: AttentionComparison, top: int = 15) -> str:
    frame = comparison.ranking().head(top)
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{v:.4f}</td>" if isinstance(v, float) else f"<td>{v}</td>" for v in row)
        + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render(result: AttentionResult, comparison: AttentionComparison | None) -> str:
    layer = result.initial_layer()
    heads = [result.head] if result.head is not None else list(range(result.n_heads))
    generated = result.n_tokens - result.n_prompt
    gen = f" + <span style='color:#8250df'>{generated} generated</span>" if generated else ""
    group = result.n_heads // result.n_kv_heads
    parts = [
        f"<div class='llmlab-att'><div><b>Attention</b> · {esc(result.label)} · "
        f"{result.n_prompt} tokens{gen} · {result.n_layers} layers × {result.n_heads} heads, "
        f"{result.n_kv_heads} KV heads (each shared by {group} query heads)</div>",
    ]
    if comparison is not None:
        b = comparison.b
        titles = np.vectorize(lambda v: f"change {v:.4f}")(comparison.change)
        parts += [
            f"<h4>Difference: {esc(b.label)} − {esc(result.label)} "
            "(red: more attention in B, blue: less)</h4>",
            _grid(result, encode.signed8(comparison.diff_thumbs), encode.DIVERGING, titles),
            "<h4>Most changed heads (mean total-variation distance per query)</h4>",
            _ranking_table(comparison),
        ]
    shown = "all heads" if result.head is None else f"head {result.head}"
    cut = (
        f" (first {STATIC_TOKENS} of {result.n_tokens} tokens)"
        if result.n_tokens > STATIC_TOKENS
        else ""
    )
    parts += [
        f"<h4>Head view · layer {layer}, {shown}{cut} — hover a line for its weight</h4>",
        f"<div class='hv'>{_head_view_svg(result, layer, heads)}</div>",
        "<h4>All heads (rows: layers; colour: √weight; hover for statistics)</h4>",
        _grid(result, encode.sqrt8(result.captured.thumbs), encode.BLUES, _stats_titles(result)),
        "<h4>Per-head statistics</h4>",
        _stats_table(result),
        "<div class='llmlab-stats'>Static export: open the notebook with a kernel for the "
        "interactive view (click tokens, enlarge heads, sort the table).</div></div>",
    ]
    return card("".join(parts), css=CSS)
