"""Static, self-contained HTML of a logit lens (exports, reports, no kernel, no network).

No script: the layer × token grid as a table (output row on top, as tuned-lens draws it), each
cell the row's top token coloured by its probability, with the top tokens, the rank of the final
prediction, entropy and KL in the cell's tooltip; per-layer entropy and KL beside the rows; for a
comparison, the agreement grid of the two variants and the per-layer divergence table. Every
token goes through ``esc``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from llmlab.html import card, esc

if TYPE_CHECKING:
    from llmlab.lens.result import LensComparison, LensResult

#: The static grid shows at most this many token columns (the live view scrolls through all).
STATIC_TOKENS = 64
#: Characters of a cell's top token shown in the cell (the tooltip has all of it).
CELL_CHARS = 7

CSS = """
.llmlab-lens h4{margin:10px 0 4px;font-size:13px}
.llmlab-lens .scroll{max-width:100%;overflow:auto;max-height:640px;border:1px solid #eaeef2}
.llmlab-lens table.grid{border-collapse:collapse;font-size:11px}
.llmlab-lens table.grid td{padding:1px 3px;border:1px solid #fff!important;white-space:pre;
  font-family:ui-monospace,Menlo,monospace;min-width:44px;max-width:70px;overflow:hidden}
.llmlab-lens table.grid th{font-weight:normal;color:#57606a;padding:1px 4px;white-space:pre;
  font-family:ui-monospace,Menlo,monospace;font-size:11px}
.llmlab-lens table.grid th.row{text-align:right!important;font-family:system-ui,sans-serif}
.llmlab-lens table.grid td.num{font-family:system-ui,sans-serif;color:#57606a;
  background:linear-gradient(90deg,#ddf4ff var(--fill),transparent var(--fill))}
.llmlab-lens .gen{color:#8250df}
"""


def _shown(token: str) -> str:
    """Newlines and tabs as arrows; a token of spaces only as "␣" marks (as lens.js)."""
    text = token.replace("\n", "↵").replace("\t", "→")
    return text.replace(" ", "␣") if not text.strip() else text


def _blue(p: float) -> tuple[str, str]:
    """Background and text colour for a probability (white -> dark blue)."""
    p = float(np.clip(p, 0, 1))
    lo, hi = np.array([255, 255, 255]), np.array([8, 48, 107])
    r, g, b = (lo + (hi - lo) * np.sqrt(p)).astype(int)
    return f"rgb({r},{g},{b})", "#fff" if p > 0.35 else "#1f2328"


def _red(v: float) -> str:
    v = float(np.clip(v, 0, 1))
    r, g, b = (np.array([255, 255, 255]) + (np.array([178, 24, 43]) - 255) * np.sqrt(v)).astype(int)
    return f"rgb({r},{g},{b})"


def _tip(result: LensResult, row: int, i: int) -> str:
    tops = " · ".join(f"{_shown(t)!r} {p:.3f}" for t, p in result.top(row, i))
    return (
        f"{result.rows[row]}, after {_shown(result.tokens[i])!r}: {tops}\n"
        f"rank of the final prediction {int(result.final_rank[row, i])} "
        f"(p {result.final_prob[row, i]:.3f}) · entropy {result.entropy[row, i]:.2f} nats · "
        f"KL to final {result.kl[row, i]:.2f} nats"
    )


def _header(result: LensResult, n: int) -> str:
    cells = "".join(
        f'<th class="{"gen" if i >= result.n_prompt else ""}" title="{esc(result.tokens[i])}">'
        f"{esc(_shown(result.tokens[i])[:CELL_CHARS])}</th>"
        for i in range(n)
    )
    return f"<tr><th></th>{cells}<th>entropy</th><th>KL to final</th></tr>"


def _num(value: float, top: float) -> str:
    fill = 0 if top <= 0 else 100 * value / top
    return f'<td class="num" style="--fill:{fill:.0f}%">{value:.2f}</td>'


def _grid(result: LensResult, n: int) -> str:
    ent, kl = result.entropy[:, :n].mean(1), result.kl[:, :n].mean(1)
    body = [_header(result, n)]
    for row in reversed(range(result.n_rows)):
        cells = []
        for i in range(n):
            text, p = result.top(row, i)[0]
            bg, fg = _blue(p)
            cells.append(
                f'<td style="background:{bg};color:{fg}" title="{esc(_tip(result, row, i))}">'
                f"{esc(_shown(text)[:CELL_CHARS])}</td>"
            )
        body.append(
            f'<tr><th class="row">{esc(result.rows[row])}</th>{"".join(cells)}'
            f"{_num(ent[row], ent.max())}{_num(kl[row], kl.max())}</tr>"
        )
    return f'<div class="scroll"><table class="grid">{"".join(body)}</table></div>'


def _agreement(comparison: LensComparison, n: int) -> str:
    a, b = comparison.a, comparison.b
    kl, agree = comparison.kl[:, :n], comparison.agree[:, :n]
    top = max(float(kl.max()), 1e-9)
    body = [_header(a, n).replace("<th>entropy</th><th>KL to final</th>", "<th>KL(A‖B)</th>")]
    for row in reversed(range(a.n_rows)):
        cells = []
        for i in range(n):
            ta, tb = a.top(row, i)[0][0], b.top(row, i)[0][0]
            tip = (
                f"{a.rows[row]}, after {_shown(a.tokens[i])!r}: A {_shown(ta)!r} · "
                f"B {_shown(tb)!r} · KL(A‖B) {kl[row, i]:.4f} nats"
            )
            mark = "=" if agree[row, i] else _shown(tb)[:CELL_CHARS]
            cells.append(
                f'<td style="background:{_red(kl[row, i] / top)}" title="{esc(tip)}">'
                f"{esc(mark)}</td>"
            )
        body.append(
            f'<tr><th class="row">{esc(a.rows[row])}</th>{"".join(cells)}'
            f"{_num(float(kl[row].mean()), float(kl.mean(1).max()))}</tr>"
        )
    return f'<div class="scroll"><table class="grid">{"".join(body)}</table></div>'


def _layer_table(comparison: LensComparison) -> str:
    frame = comparison.layer_table().iloc[::-1]
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{v:.4f}</td>" if isinstance(v, float) else f"<td>{esc(v)}</td>" for v in row
        )
        + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render(result: LensResult, comparison: LensComparison | None) -> str:
    n = min(result.n_tokens, STATIC_TOKENS)
    cut = f" (first {n} of {result.n_tokens} tokens)" if result.n_tokens > n else ""
    generated = result.n_tokens - result.n_prompt
    gen = f" + <span class='gen'>{generated} generated</span>" if generated else ""
    parts = [
        f"<div class='llmlab-lens'><div><b>Logit lens</b> · {esc(result.label)} · "
        f"{result.n_prompt} tokens{gen} · embeddings + {result.n_layers} layers · each row read "
        f"as {esc(result.reading)}</div>"
    ]
    if comparison is not None:
        b = comparison.b
        parts += [
            f"<h4>Where {esc(b.label)} (B) parts from {esc(result.label)} (A){cut}: '=' same "
            "top-1, else B's top-1; red: KL(A‖B)</h4>",
            _agreement(comparison, n),
            "<h4>Per layer</h4>",
            _layer_table(comparison),
            f"<h4>A: {esc(result.label)}</h4>",
        ]
    parts += [
        f"<h4>Top token per layer and token{cut} — colour: its probability; hover a cell for "
        "the top tokens, the rank of the final prediction, entropy and KL</h4>",
        _grid(result, n),
    ]
    if comparison is not None:
        parts += [f"<h4>B: {esc(comparison.b.label)}</h4>", _grid(comparison.b, n)]
    parts.append(
        "<div class='llmlab-stats'>Static export: open the notebook with a kernel for the "
        "interactive view (colour by rank of the final prediction, entropy, KL; details per "
        "cell).</div></div>"
    )
    return card("".join(parts), css=CSS)
