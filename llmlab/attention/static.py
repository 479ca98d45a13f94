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
STAT_LABELS = {"entropy": "entropy", "sink": "sink", "prev": "prev", "distance": "distance"}
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
.llmlab-att .grid td.none{color:#8c959f;font-style:italic;text-align:left;padding-left:8px}
.llmlab-att .stats{max-height:320px;overflow:auto;display:inline-block}
.llmlab-att .stats td{font-variant-numeric:tabular-nums}
.llmlab-att .hv{max-height:520px;overflow:auto;border:1px solid #eaeef2}
.llmlab-att .hv text{font-family:ui-monospace,Menlo,monospace;font-size:11px}
"""


def _token_label(token: str) -> str:
    return token.replace("\n", "↵").replace("\t", "→")


def _head_view_svg(result: AttentionResult, stack: str, layer: int, heads: list[int]) -> str:
    s = result.stack(stack)
    q_tokens, k_tokens = result.tokens_of(s.queries), result.tokens_of(s.keys)
    nq, nk = min(len(q_tokens), STATIC_TOKENS), min(len(k_tokens), STATIC_TOKENS)
    row_h, col_w, gap = 16, 150, 220
    width, height = 2 * col_w + gap, max(nq, nk) * row_h + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">']
    k = 6 if len(heads) == 1 else 3
    for head in heads:
        a = s.block(layer, head, nq, nk)
        values, index = a.topk(min(k, nk), dim=-1)
        color = PALETTE[head % len(PALETTE)]
        for q in range(nq):
            for v, key in zip(values[q].tolist(), index[q].tolist()):
                if v < 0.02:
                    continue
                y1, y2 = q * row_h + 12, key * row_h + 12
                tip = (
                    f"L{layer} H{head}: {_token_label(q_tokens[q])!r} → "
                    f"{_token_label(k_tokens[key])!r} {v:.3f}"
                )
                parts.append(
                    f'<line x1="{col_w}" y1="{y1}" x2="{col_w + gap}" y2="{y2}" '
                    f'stroke="{color}" stroke-width="2" stroke-opacity="{min(1.0, v):.3f}">'
                    f"<title>{esc(tip)}</title></line>"
                )
    for side, tokens, n in (("q", q_tokens, nq), ("k", k_tokens, nk)):
        axis = s.queries if side == "q" else s.keys
        for i in range(n):
            fill = "#8250df" if axis == "source" and i >= result.n_prompt else "#1f2328"
            label = esc(_token_label(tokens[i])[:18])
            y = i * row_h + 16
            if side == "q":
                parts.append(
                    f'<text x="{col_w - 6}" y="{y}" text-anchor="end" fill="{fill}">{label}</text>'
                )
            else:
                parts.append(f'<text x="{col_w + gap + 6}" y="{y}" fill="{fill}">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _grid(
    result: AttentionResult,
    stack: str,
    layers: list[int],
    codes: np.ndarray,
    cmap: np.ndarray,
    titles: np.ndarray | None,
) -> str:
    """One row per layer of the stack: thumbnails where captured (``codes`` in the order of
    ``layers``), the layer's kind where it has no weights."""
    s = result.stack(stack)
    group = s.n_heads // s.n_kv_heads
    head_row = "".join(f'<th colspan="{group}" class="kv">KV {g}</th>' for g in range(s.n_kv_heads))
    sub_row = "".join(f"<th>h{h}</th>" for h in range(s.n_heads))
    rows = [f"<tr><th></th>{head_row}</tr><tr><th></th>{sub_row}</tr>"]
    for info in s.layers:
        if info.index not in layers:
            why = "no attention weights" if not info.has_attention else info.note or "not captured"
            rows.append(
                f'<tr><th>L{info.index}</th><td colspan="{s.n_heads}" class="none">'
                f"{esc(info.kind)} · {why}</td></tr>"
            )
            continue
        slot = layers.index(info.index)
        cells = []
        for head in range(s.n_heads):
            title = f"L{info.index} H{head}" + (
                f" · {titles[slot, head]}" if titles is not None else ""
            )
            uri = encode.png_data_uri(codes[slot, head], cmap)
            cells.append(f'<td><img src="{uri}" title="{esc(title)}" alt="{esc(title)}"></td>')
        rows.append(f"<tr><th>L{info.index}</th>{''.join(cells)}</tr>")
    return f'<table class="grid">{"".join(rows)}</table>'


def _stats_titles(result: AttentionResult, stack: str) -> np.ndarray:
    s = result.stack(stack)
    stats = result.stats(stack)
    out = np.empty((len(s.captured), s.n_heads), dtype=object)
    for slot in range(len(s.captured)):
        for head in range(s.n_heads):
            parts = [f"KV {result.kv_head(head, stack)}"]
            parts += [f"{STAT_LABELS[k]} {v[slot, head]:.2f}" for k, v in stats.items()]
            out[slot, head] = " · ".join(parts)
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


def _stack_section(
    result: AttentionResult, stack: str, comparison: AttentionComparison | None
) -> list[str]:
    s = result.stack(stack)
    layer = result.initial_layer(stack)
    heads = [result.head] if result.head is not None else list(range(s.n_heads))
    heads = [h for h in heads if h < s.n_heads]
    parts = []
    if len(result.stack_names) > 1:
        parts.append(f"<h3>{esc(s.title[0].upper() + s.title[1:])}</h3>")
    if comparison is not None and stack in comparison.diffs:
        d = comparison.diffs[stack]
        titles = np.vectorize(lambda v: f"change {v:.4f}")(d.change)
        parts += [
            f"<h4>Difference: {esc(comparison.b.label)} − {esc(result.label)} "
            "(red: more attention in B, blue: less)</h4>",
            _grid(result, stack, d.layers, encode.signed8(d.thumbs), encode.DIVERGING, titles),
        ]
    n_q = len(result.tokens_of(s.queries))
    cut = f" (first {STATIC_TOKENS} of {n_q} tokens)" if n_q > STATIC_TOKENS else ""
    shown = "all heads" if result.head is None else f"head {result.head}"
    thumbs = encode.sqrt8(s.thumbs)
    parts += [
        f"<h4>Head view · layer {layer}, {shown}{cut} — hover a line for its weight</h4>",
        f"<div class='hv'>{_head_view_svg(result, stack, layer, heads)}</div>",
        "<h4>All heads (rows: layers; colour: √weight; hover for statistics)</h4>",
        _grid(result, stack, s.captured, thumbs, encode.BLUES, _stats_titles(result, stack)),
    ]
    return parts


def render(result: AttentionResult, comparison: AttentionComparison | None) -> str:
    s = result.captured.main
    generated = result.n_tokens - result.n_prompt
    gen = f" + <span style='color:#8250df'>{generated} generated</span>" if generated else ""
    target = result.target_tokens
    target_text = f" · {len(target)} decoder tokens" if target is not None else ""
    group = s.n_heads // s.n_kv_heads
    kept, total = len(s.captured), len(s.layers)
    layers = f"{total} layers" if kept == total else f"{kept} of {total} layers captured"
    parts = [
        f"<div class='llmlab-att'><div><b>Attention</b> · {esc(result.label)} · "
        f"{result.n_prompt} tokens{gen}{target_text} · {layers} × {s.n_heads} heads, "
        f"{s.n_kv_heads} KV heads (each shared by {group} query heads)</div>",
    ]
    if comparison is not None:
        parts += [
            "<h4>Most changed heads (mean total-variation distance per query)</h4>",
            _ranking_table(comparison),
        ]
    for stack in result.stack_names:
        parts += _stack_section(result, stack, comparison)
    parts += [
        "<h4>Per-head statistics</h4>",
        _stats_table(result),
        "<div class='llmlab-stats'>Static export: open the notebook with a kernel for the "
        "interactive view (click tokens, enlarge heads, sort the table).</div></div>",
    ]
    return card("".join(parts), css=CSS)
