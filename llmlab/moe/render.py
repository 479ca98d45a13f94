"""Static, offline HTML of a routing: inline SVG and CSS, no script, no network.

It is what exported notebooks, GitHub-like viewers (which strip scripts) and ``save_html``
show, so everything here must read without JavaScript: hover text uses ``title``. The token
map is capped at ``STATIC_TOKENS`` tokens to keep reports small; the live view shows all.
"""

from __future__ import annotations

import colorsys
from typing import TYPE_CHECKING

import numpy as np

from llmlab.html import card, esc
from llmlab.moe import stats

if TYPE_CHECKING:
    from llmlab.moe.result import MoeRouting

STATIC_TOKENS = 256

CSS = """
.llmlab-moe h4{margin:12px 0 4px;font-size:13px}
.llmlab-moe .mx-sub{color:#57606a;font-size:12px;margin:2px 0 6px}
.llmlab-moe .mx-map{display:flex;flex-wrap:wrap;gap:1px 0;font-family:ui-monospace,Menlo,monospace;
  font-size:12px;line-height:1.2}
.llmlab-moe .mx-tok{display:inline-flex;flex-direction:column;align-items:stretch;min-width:9px}
.llmlab-moe .mx-strip{height:28px;border-radius:1px}
.llmlab-moe .mx-txt{white-space:pre;text-align:center;padding:0 1px;color:#1f2328}
.llmlab-moe .mx-gen .mx-txt{color:#8250df;font-style:italic}
.llmlab-moe .mx-input{color:#57606a;font-size:12px;margin-top:6px}
.llmlab-moe svg text{font-family:system-ui,sans-serif;font-size:10px;fill:#57606a}
"""


def expert_palette(n_experts: int) -> list[str]:
    """A distinct colour per expert (golden-angle hues, alternating lightness), as hex.

    Shared with the live view through the payload, so both colour an expert the same way.
    """
    colors = []
    for e in range(n_experts):
        hue = (e * 0.618034) % 1.0
        light = 0.50 if e % 2 == 0 else 0.68
        r, g, b = colorsys.hls_to_rgb(hue, light, 0.62)
        colors.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
    return colors


def _ratio_color(ratio: float) -> str:
    """White at the uniform share, red above it, blue below (log scale, saturating at 4x)."""
    x = float(np.clip(np.log2(max(ratio, 1e-6)) / 2, -1, 1))
    if x >= 0:
        return f"rgb(255,{round(255 - 175 * x)},{round(255 - 175 * x)})"
    return f"rgb({round(255 + 175 * x)},{round(255 + 120 * x)},255)"


def _seq_color(p: float) -> str:
    """White → dark blue for a probability."""
    p = float(np.clip(p, 0, 1))
    return f"rgb({round(255 - 222 * p)},{round(255 - 160 * p)},{round(255 - 60 * p)})"


def routing_html(r: MoeRouting) -> str:
    palette = expert_palette(r.n_experts)
    head = (
        f"<b>MoE routing</b> · {esc(r.model)} · {esc(r.family)}: {r.n_experts} experts, "
        f"top-{r.top_k}, {len(r.moe_layers)} of {r.n_layers} layers sparse"
        f'<div class="mx-sub">rule: {esc(r.rule)} · {r.n_tokens} tokens'
        f"{f' in {len(r.inputs)} inputs' if len(r.inputs) > 1 else ''}</div>"
        + "".join(f'<div class="llmlab-note">{esc(n)}</div>' for n in r.notes)
    )
    parts = [head, _token_map(r, palette), _load(r, palette), _coactivation(r), _runs(r)]
    parts.append(_across_inputs(r))
    parts.append(_specialisation(r))
    return card(f'<div class="llmlab-moe">{"".join(parts)}</div>', css=CSS)


def _token_map(r: MoeRouting, palette: list[str]) -> str:
    n_layers = len(r.moe_layers)
    step = 100 / n_layers
    out = [
        "<h4>Token × layer map</h4>",
        f'<div class="mx-sub">Each token\'s strip stacks the MoE layers, first layer '
        f"({r.moe_layers[0]}) on top, coloured by the first-choice expert; hover for the top-"
        f"{r.top_k} experts and gate weights. Generated tokens are in purple italics.</div>",
    ]
    budget = STATIC_TOKENS
    for item in r.inputs:
        if budget <= 0:
            break
        shown = min(item.n_tokens, budget)
        budget -= shown
        if len(r.inputs) > 1:
            out.append(f'<div class="mx-input">{esc(item.name)}</div>')
        cells = []
        for t in range(shown):
            first = item.experts[:, t, 0]
            stops = ",".join(
                f"{palette[e]} {i * step:.2f}% {(i + 1) * step:.2f}%" for i, e in enumerate(first)
            )
            hover = "\n".join(
                f"L{layer}: "
                + " ".join(f"e{e}:{w:.2f}" for e, w in zip(item.experts[i, t], item.weights[i, t]))
                for i, layer in enumerate(r.moe_layers)
            )
            token = item.tokens[t]
            gen = " mx-gen" if t >= item.n_prompt else ""
            cells.append(
                f'<span class="mx-tok{gen}" title="{esc(repr(token))}&#10;{esc(hover)}">'
                f'<span class="mx-strip" style="background:linear-gradient({stops})"></span>'
                f'<span class="mx-txt">{esc(_visible(token))}</span></span>'
            )
        out.append(f'<div class="mx-map">{"".join(cells)}</div>')
    if r.n_tokens > STATIC_TOKENS:
        out.append(
            f'<div class="mx-sub">first {STATIC_TOKENS} of {r.n_tokens} tokens shown here; '
            "the live view and to_pandas() have all of them</div>"
        )
    return "".join(out)


def _visible(token: str) -> str:
    return token.replace("\n", "↵").replace("\t", "→") or "∅"


def _load(r: MoeRouting, palette: list[str]) -> str:
    top1, topk = r.load_counts()
    pos = r.layer_position(r.focus_layer)
    n = max(r.n_tokens, 1)
    share_k, share_1 = topk[pos] / n, top1[pos] / n
    E, width, height = r.n_experts, 640, 150
    bar = width / E
    peak = max(float(share_k.max()), r.top_k / E) * 1.1
    y = lambda v: height - 14 - (height - 24) * v / peak  # noqa: E731
    rects = []
    for e in range(E):
        x = e * bar
        rects.append(
            f'<rect x="{x + 0.5:.1f}" y="{y(share_k[e]):.1f}" width="{max(bar - 1, 1):.1f}" '
            f'height="{y(0) - y(share_k[e]):.1f}" fill="{palette[e]}" opacity="0.45">'
            f"<title>expert {e}: top-{r.top_k} share {share_k[e]:.3f}, "
            f"first choice {share_1[e]:.3f}</title></rect>"
            f'<rect x="{x + 0.5:.1f}" y="{y(share_1[e]):.1f}" width="{max(bar - 1, 1):.1f}" '
            f'height="{y(0) - y(share_1[e]):.1f}" fill="{palette[e]}"/>'
        )
    lines = (
        f'<line x1="0" x2="{width}" y1="{y(r.top_k / E):.1f}" y2="{y(r.top_k / E):.1f}" '
        f'stroke="#cf222e" stroke-dasharray="4 3"/>'
        f'<text x="{width - 4}" y="{y(r.top_k / E) - 3:.1f}" text-anchor="end">'
        f"uniform k/E = {r.top_k / E:.3f}</text>"
        f'<line x1="0" x2="{width}" y1="{y(1 / E):.1f}" y2="{y(1 / E):.1f}" '
        f'stroke="#1f2328" stroke-dasharray="2 3"/>'
        f'<text x="{width - 4}" y="{y(1 / E) - 3:.1f}" text-anchor="end">1/E = {1 / E:.3f}</text>'
        f'<text x="0" y="{height - 2}">expert 0</text>'
        f'<text x="{width}" y="{height - 2}" text-anchor="end">expert {E - 1}</text>'
    )
    chart = (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f"{''.join(rects)}{lines}</svg>"
    )
    cv1, mm1 = stats.imbalance(top1)
    cvk, mmk = stats.imbalance(topk)
    rows = "".join(
        f"<tr><td>{layer}</td><td>{cv1[i]:.2f}</td><td>{mm1[i]:.2f}</td>"
        f"<td>{cvk[i]:.2f}</td><td>{mmk[i]:.2f}</td></tr>"
        for i, layer in enumerate(r.moe_layers)
    )
    table = (
        "<table><tr><th>layer</th><th>CV top-1</th><th>max/mean top-1</th>"
        f"<th>CV top-{r.top_k}</th><th>max/mean top-{r.top_k}</th></tr>{rows}</table>"
    )
    return (
        f"<h4>Load per expert · layer {r.focus_layer}</h4>"
        f'<div class="mx-sub">Share of tokens with the expert in their top-{r.top_k} (pale) and '
        "as first choice (solid); dashed lines: uniform shares. Imbalance per layer: "
        "coefficient of variation and max/mean of tokens per expert (0 and 1 when even).</div>"
        f"{chart}{_layer_heatmap(r, topk / n / (r.top_k / E))}{table}"
    )


def _layer_heatmap(r: MoeRouting, ratio: np.ndarray) -> str:
    """Layers × experts, coloured by load relative to uniform."""
    E, L = r.n_experts, len(r.moe_layers)
    cell, left = max(4, min(14, 600 // E)), 28
    cells = []
    for i, layer in enumerate(r.moe_layers):
        cells.append(f'<text x="0" y="{i * cell + cell - 2}">L{layer}</text>')
        for e in range(E):
            cells.append(
                f'<rect x="{left + e * cell}" y="{i * cell}" width="{cell}" height="{cell}" '
                f'fill="{_ratio_color(ratio[i, e])}"><title>layer {layer}, expert {e}: '
                f"{ratio[i, e]:.2f}× uniform</title></rect>"
            )
    w, h = left + E * cell, L * cell
    return (
        '<div class="mx-sub">Every layer: load ÷ uniform (red above, blue below, white even)'
        f'</div><svg width="{w}" height="{h}">{"".join(cells)}</svg>'
    )


def _coactivation(r: MoeRouting) -> str:
    E = r.n_experts
    p = r.coactivation()
    cell = max(4, min(16, 480 // E))
    top = p.max() or 1.0
    cells = []
    for i in range(E):
        for j in range(E):
            if p[i, j] > 0:
                cells.append(
                    f'<rect x="{j * cell}" y="{i * cell}" width="{cell}" height="{cell}" '
                    f'fill="{_seq_color(p[i, j] / top)}"><title>P(expert {j} | expert {i}) = '
                    f"{p[i, j]:.2f}</title></rect>"
                )
    size = E * cell
    return (
        f"<h4>Co-activation · layer {r.focus_layer}</h4>"
        f'<div class="mx-sub">Row i, column j: among tokens with expert i in their top-{r.top_k}, '
        f"the share that also picked j (darkest = {top:.2f}). Independent choices give about "
        f"{(r.top_k - 1) / max(E - 1, 1):.2f}.</div>"
        f'<svg width="{size}" height="{size}" style="border:1px solid #d0d7de">'
        f"{''.join(cells)}</svg>"
    )


def _runs(r: MoeRouting) -> str:
    runs = r.same_expert_runs()
    L = len(r.moe_layers)
    width, height, left = 640, 130, 4
    group = (width - left) / L
    peak = max(np.nanmax(runs["observed"]) if L else 0, runs["shuffled"].max(), 1 / r.n_experts)
    peak = (peak or 1) * 1.15
    y = lambda v: height - 14 - (height - 24) * v / peak  # noqa: E731
    bars = []
    for i, layer in enumerate(r.moe_layers):
        x = left + i * group
        obs, base = runs["observed"][i], runs["shuffled"][i]
        obs = 0.0 if np.isnan(obs) else obs
        bw = max(group / 2 - 2, 1)
        bars.append(
            f'<rect x="{x:.1f}" y="{y(obs):.1f}" width="{bw:.1f}" height="{y(0) - y(obs):.1f}" '
            f'fill="#0969da"><title>layer {layer}: {obs:.3f} of consecutive tokens keep their '
            f"first choice</title></rect>"
            f'<rect x="{x + bw + 1:.1f}" y="{y(base):.1f}" width="{bw:.1f}" '
            f'height="{y(0) - y(base):.1f}" fill="#afb8c1"><title>layer {layer}: random order '
            f"would give {base:.3f}</title></rect>"
            f'<text x="{x + bw:.1f}" y="{height - 2}" text-anchor="middle">L{layer}</text>'
        )
    uni = 1 / r.n_experts
    line = (
        f'<line x1="0" x2="{width}" y1="{y(uni):.1f}" y2="{y(uni):.1f}" stroke="#cf222e" '
        f'stroke-dasharray="4 3"/><text x="{width - 4}" y="{y(uni) - 3:.1f}" '
        f'text-anchor="end">1/E = {uni:.3f}</text>'
    )
    return (
        "<h4>Same-expert runs</h4>"
        '<div class="mx-sub">Share of consecutive tokens whose first choice is the same expert '
        "(blue) against the same tokens in random order (grey: sum of squared first-choice "
        "shares) and uniform 1/E (dashed).</div>"
        f'<svg width="{width}" height="{height}">{"".join(bars)}{line}</svg>'
    )


def _across_inputs(r: MoeRouting) -> str:
    vocab = r.vocab_specialization()
    pos = r.layer_position(r.focus_layer)
    out = ["<h4>Across inputs</h4>"]
    if len(r.inputs) > 1:
        shares = r.input_shares()[:, pos]  # (inputs, E)
        E = r.n_experts
        cell, left = max(4, min(14, 560 // E)), 110
        cells = []
        for i, item in enumerate(r.inputs):
            cells.append(f'<text x="0" y="{i * 16 + 12}">{esc(item.name[:18])}</text>')
            for e in range(E):
                ratio = shares[i, e] * E
                cells.append(
                    f'<rect x="{left + e * cell}" y="{i * 16}" width="{cell}" height="15" '
                    f'fill="{_ratio_color(ratio)}"><title>{esc(item.name)}, expert {e}: share '
                    f"{shares[i, e]:.3f} ({ratio:.2f}× uniform)</title></rect>"
                )
        out.append(
            f'<div class="mx-sub">Layer {r.focus_layer}: each input\'s share of top-{r.top_k} '
            f"picks per expert ÷ uniform 1/E (red above, blue below).</div>"
            f'<svg width="{left + E * cell}" height="{len(r.inputs) * 16}">{"".join(cells)}</svg>'
        )
    else:
        out.append('<div class="mx-sub">Give several texts to compare experts across inputs.</div>')
    rows = "".join(
        f"<tr><td>{layer}</td><td>{_pct(vocab['mean'][i])}</td>"
        f"<td>{_pct(vocab['baseline'][i])}</td></tr>"
        for i, layer in enumerate(r.moe_layers)
    )
    top = "".join(
        f"<tr><td><code>{esc(repr(r._token_text(t)))}</code></td><td>{c}</td><td>{e}</td>"
        f"<td>{s:.2f}</td></tr>"
        for t, c, e, s in vocab["rows"][pos][:8]
    )
    out.append(
        '<div class="mx-sub">Vocabulary specialization: share of a token id\'s occurrences '
        "(ids seen twice or more) routed first to its most frequent expert, against the same "
        "measure with ids shuffled over positions.</div>"
        "<table><tr><th>layer</th><th>specialization</th><th>shuffled ids</th></tr>"
        f"{rows}</table>"
        f'<div class="mx-sub">Most specialised token ids in layer {r.focus_layer}:</div>'
        f"<table><tr><th>token</th><th>count</th><th>expert</th><th>share</th></tr>{top}</table>"
    )
    return "".join(out)


def _pct(x: float) -> str:
    return "–" if x is None or np.isnan(x) else f"{100 * x:.1f}%"


# -- specialisation ----------------------------------------------------------------------------


def _specialisation(r: MoeRouting) -> str:
    table = r.specialisation()
    has_base = "mi_class_untrained" in table
    base_words = (
        f"untrained: {esc(r.untrained_label)}"
        if has_base
        else "no untrained comparison for this model"
    )
    head = (
        "<tr><th>layer</th><th>MI class</th>"
        + ("<th>untrained</th>" if has_base else "")
        + "<th>chance</th><th>MI token</th>"
        + ("<th>untrained</th>" if has_base else "")
        + "<th>chance</th><th>balance</th>"
        + ("<th>untrained</th>" if has_base else "")
        + "</tr>"
    )
    rows = []
    for _, row in table.iterrows():
        cells = [f"<td>{int(row['layer'])}</td>", f"<td><b>{row['mi_class']:.3f}</b></td>"]
        if has_base:
            cells.append(f"<td>{row['mi_class_untrained']:.3f}</td>")
        cells += [
            f"<td>{row['mi_class_chance']:.3f}</td>",
            f"<td><b>{row['mi_token']:.3f}</b></td>",
        ]
        if has_base:
            cells.append(f"<td>{row['mi_token_untrained']:.3f}</td>")
        cells += [f"<td>{row['mi_token_chance']:.3f}</td>", f"<td><b>{row['balance']:.2f}</b></td>"]
        if has_base:
            cells.append(f"<td>{row['balance_untrained']:.2f}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    shares = r.class_shares()
    palette = expert_palette(r.n_experts)
    present = np.concatenate([i.classes for i in r.inputs])
    bars = []
    for c, name in enumerate(stats.TOKEN_CLASSES):
        n = int((present == c).sum())
        if not n:
            continue
        segs = "".join(
            f'<span style="display:inline-block;height:12px;width:{shares[c, e] * 240:.1f}px;'
            f'background:{palette[e]}" title="{name}: {100 * shares[c, e]:.0f}% to expert {e}">'
            "</span>"
            for e in range(r.n_experts)
            if shares[c, e] > 0
        )
        bars.append(
            f'<div><span style="display:inline-block;width:96px">{name} ({n})</span>{segs}</div>'
        )
    return (
        "<h4>Specialisation</h4>"
        '<div class="mx-sub">Mutual information (bits) between each token\'s first-choice expert '
        "and its class (code / prose / digit / punctuation / whitespace) or its identity; "
        "chance: the same with labels shuffled over tokens (a plug-in estimate reads above 0 "
        f"on few tokens). Balance: entropy of the top-{r.top_k} load ÷ log E (1 = even). "
        f"{base_words}.</div>"
        f"<table>{head}{''.join(rows)}</table>"
        f'<div class="mx-sub">Layer {r.focus_layer}: where each class\'s tokens go first '
        "(bar = 100% of the class, coloured by expert)</div>" + "".join(bars)
    )


# -- training ------------------------------------------------------------------------------------


def _loss_curve(losses: list[float], width: int = 640, height: int = 150) -> str:
    if not losses:
        return '<div class="mx-sub">no step finished yet</div>'
    top, low = max(losses), min(losses)
    span = (top - low) or 1.0
    n = max(len(losses) - 1, 1)
    pts = " ".join(
        f"{30 + (width - 40) * i / n:.1f},{10 + (height - 30) * (top - v) / span:.1f}"
        for i, v in enumerate(losses)
    )
    return (
        f'<svg width="{width}" height="{height}"><polyline points="{pts}" fill="none" '
        f'stroke="#0969da" stroke-width="1.5"/>'
        f'<text x="0" y="14">{top:.2f}</text><text x="0" y="{height - 20}">{low:.2f}</text>'
        f'<text x="30" y="{height - 4}">step 1</text>'
        f'<text x="{width - 10}" y="{height - 4}" text-anchor="end">step {len(losses)}</text>'
        "</svg>"
    )


def _probe_map(tokens: list[str], first: np.ndarray, palette: list[str]) -> str:
    cells = []
    for t, token in enumerate(tokens[:STATIC_TOKENS]):
        strip = "".join(
            f'<span style="display:block;height:7px;background:{palette[e]}"></span>'
            for e in first[:, t]
        )
        hover = " ".join(f"L{i}:e{e}" for i, e in enumerate(first[:, t]))
        cells.append(
            f'<span class="mx-tok" title="{esc(repr(token))} {hover}">{strip}'
            f'<span class="mx-txt">{esc(_visible(token))}</span></span>'
        )
    return f'<div class="mx-map">{"".join(cells)}</div>'


def training_html(run) -> str:
    """Offline view of a demo training run: loss, the probe's routing before and after."""
    palette = expert_palette(run.recipe.experts)
    parts = [
        f"<b>MoE demo training</b> · {esc(run.status)}"
        f'<div class="mx-sub">{esc(run.summary())}</div>',
        "<h4>Training loss (nats per token, full vocabulary)</h4>",
        _loss_curve(list(run.trained.losses) if run.trained is not None else []),
    ]
    if run.snapshots:
        first, last = run.snapshots[0], run.snapshots[-1]
        for snap, title in ((first, "before training"), (last, f"at step {last.step}")):
            mi = " ".join(f"L{i} {x:.2f}" for i, x in enumerate(snap.mi_class))
            mi += f" (on {run.measured_on})"
            parts.append(
                f"<h4>Probe routing {title}</h4>"
                f'<div class="mx-sub">Each token\'s strip: layers top to bottom, coloured by '
                f"first-choice expert. MI(class; expert), bits: {mi}</div>"
                + _probe_map(run.tokens, snap.first, palette)
            )
    return card(f'<div class="llmlab-moe">{"".join(parts)}</div>', css=CSS)
