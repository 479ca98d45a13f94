"""Typed results of interventions and scans: ``to_pandas()``, offline ``to_html()``, live views.

Grids keep NaN where a variant does not exist (a layer without attention heads); payloads
send them as ``null``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from llmlab.errors import LabError
from llmlab.html import card, esc
from llmlab.results import Result

if TYPE_CHECKING:
    import pandas as pd

METRIC_WORDS = {
    "logprob": "Δ log-probability of the answer",
    "kl": "KL divergence of the next-token distribution (nats)",
}


@dataclass
class ScanTiming:
    """How a scan ran: its variants, forward passes, rows per pass, wall time, and the work
    done as a share of a loop's (variants × layers × tokens, each row counted only at the
    layers and tokens it ran)."""

    method: str  # "batched" or "loop"
    variants: int
    passes: int
    rows_per_pass: int
    seconds: float
    work: float = 1.0  # layer × token rows computed / a loop's
    prefix_reused: bool = False  # passes ran only the tokens from their patched position

    def text(self) -> str:
        how = self.method
        if self.method == "batched":
            how += f", {self.work:.0%} of a loop's layer × token work"
            if self.prefix_reused:
                how += ", corrupted prefix reused"
        return (
            f"{self.variants} variants in {self.passes} forward "
            f"pass{'' if self.passes == 1 else 'es'} "
            f"(≤ {self.rows_per_pass} per pass, {how}) · {self.seconds:.2f} s"
        )


def _grid(values: np.ndarray | None, digits: int = 4) -> list | None:
    if values is None:
        return None
    return [
        [None if not np.isfinite(v) else round(float(v), digits) for v in row] for row in values
    ]


def _colour(value: float, scale: float) -> str:
    """Blue for positive, red for negative, white at 0 (inline style for the static copy)."""
    if not np.isfinite(value) or scale <= 0:
        return "#f6f8fa"
    t = max(-1.0, min(1.0, value / scale))
    if t >= 0:
        r, g, b = (int(255 - t * (255 - c)) for c in (33, 102, 172))
    else:
        r, g, b = (int(255 + t * (255 - c)) for c in (178, 24, 43))
    return f"rgb({r},{g},{b})"


def _heat_table(values: np.ndarray, rows: list[str], cols: list[str], title: str) -> str:
    finite = values[np.isfinite(values)]
    scale = float(np.abs(finite).max()) if finite.size else 0.0
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = []
    for label, row in zip(rows, values, strict=True):
        cells = "".join(
            f'<td style="background:{_colour(v, scale)}" title="{esc(label)} · {esc(c)}: '
            f'{"—" if not np.isfinite(v) else f"{v:.4f}"}">'
            f"{'' if not np.isfinite(v) else f'{v:.2f}'}</td>"
            for c, v in zip(cols, row, strict=True)
        )
        body.append(f"<tr><th>{esc(label)}</th>{cells}</tr>")
    return (
        f"<div><b>{esc(title)}</b></div>"
        f'<table class="llmlab-int-heat"><tr><th></th>{head}</tr>{"".join(body)}</table>'
    )


HEAT_CSS = (
    ".llmlab-int-heat td{min-width:26px;text-align:right!important;font-size:10px;padding:1px 3px}"
    ".llmlab-int-heat th{font-size:10px;padding:1px 3px}"
)


@dataclass(repr=False)
class HeadImportance(Result):
    """Every head ablated in turn: ``effects[layer, head]`` is the change of the metric
    (NaN for layers without attention heads)."""

    model: str
    text: str
    tokens: list[str]
    answer_text: str | None
    answer_logprob: float | None  # log p(answer) without ablation
    predicted: str  # the model's top next token without ablation
    metric: str  # "logprob" or "kl"
    mode: str  # "zero" or "mean"
    effects: np.ndarray  # (layers, heads)
    kinds: list[str]
    n_kv_heads: int
    timing: ScanTiming
    #: The same tokens' attention (an AttentionResult), so a clicked head shows its pattern.
    attention: Any = field(default=None, compare=False)

    @property
    def n_layers(self) -> int:
        return int(self.effects.shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.effects.shape[1])

    def to_pandas(self) -> pd.DataFrame:
        """One row per head, most important first (largest |effect|)."""
        import pandas as pd

        rows = [
            {"layer": layer, "head": head, self.metric_column: float(v)}
            for (layer, head), v in np.ndenumerate(self.effects)
            if np.isfinite(v)
        ]
        frame = pd.DataFrame(rows)
        order = frame[self.metric_column].abs().sort_values(ascending=False).index
        return frame.loc[order].reset_index(drop=True)

    @property
    def metric_column(self) -> str:
        return "Δ log p(answer)" if self.metric == "logprob" else "KL (nats)"

    def top(self, n: int = 5) -> list[tuple[int, int, float]]:
        frame = self.to_pandas().head(n)
        return [(int(r[0]), int(r[1]), float(r[2])) for r in frame.itertuples(index=False)]

    def effect(self, layer: int, head: int) -> float:
        if not (0 <= layer < self.n_layers and 0 <= head < self.n_heads):
            raise LabError(
                f"head {layer}.{head} is out of range: layers 0-{self.n_layers - 1}, "
                f"heads 0-{self.n_heads - 1}"
            )
        return float(self.effects[layer, head])

    def summary(self) -> str:
        (layer, head, value), *_ = self.top(1) or [(0, 0, float("nan"))]
        what = f"answer {self.answer_text!r}" if self.answer_text is not None else "next-token KL"
        return (
            f"HeadImportance({self.model}: {len(self.tokens)} tokens, {what}, {self.mode} "
            f"ablation of {np.isfinite(self.effects).sum()} heads; strongest L{layer}H{head} "
            f"{value:+.4f}; {self.timing.text()})"
        )

    def payload(self) -> dict[str, Any]:
        return {
            "kind": "heads",
            "model": self.model,
            "text": self.text,
            "tokens": self.tokens,
            "answer": self.answer_text,
            "answer_logprob": self.answer_logprob,
            "predicted": self.predicted,
            "metric": self.metric,
            "metric_words": METRIC_WORDS[self.metric],
            "mode": self.mode,
            "effects": _grid(self.effects, 5),
            "kinds": self.kinds,
            "n_kv_heads": self.n_kv_heads,
            "timing": self.timing.text(),
            "patterns": self.attention is not None,
        }

    def answer(self, request: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
        """The view asks for one head's attention pattern over the same tokens."""
        reply = {k: request.get(k) for k in ("id", "kind", "layer", "head")}
        if self.attention is None:
            return reply | {"error": "no attention was captured with this scan"}, []
        forwarded = {"kind": "head", "layer": request.get("layer"), "head": request.get("head")}
        msg, buffers = self.attention.answer(forwarded | {"which": "a"})
        return reply | {k: v for k, v in msg.items() if k not in reply}, buffers

    def to_html(self) -> str:
        layers = [f"L{i}" for i in range(self.n_layers)]
        heads = [f"H{h}" for h in range(self.n_heads)]
        top = "".join(
            f"<tr><td>L{layer}H{head}</td><td>{v:+.4f}</td></tr>" for layer, head, v in self.top(8)
        )
        base = (
            f"log p({esc(self.answer_text)!s}) = {self.answer_logprob:.3f}"
            if self.answer_logprob is not None
            else f"predicts {esc(self.predicted)!s}"
        )
        body = (
            f"<b>Head importance</b> · {esc(self.model)} · {self.mode} ablation · "
            f"{esc(METRIC_WORDS[self.metric])}<div class='llmlab-prompt'>{esc(self.text)}</div>"
            f"<div class='llmlab-stats'>{base} · {esc(self.timing.text())}</div>"
            f"<table><tr><th>head</th><th>{esc(self.metric_column)}</th></tr>{top}</table>"
            + _heat_table(self.effects, layers, heads, "layer × head")
        )
        return card(body, css=HEAT_CSS)


@dataclass(repr=False)
class PatchingResult(Result):
    """Clean activations patched into the corrupted run; grids hold the restored logit
    difference, 0 = corrupted, 1 = clean."""

    model: str
    clean: str
    corrupted: str
    clean_tokens: list[str]
    corrupted_tokens: list[str]
    answer_text: str
    wrong_text: str
    ld_clean: float
    ld_corrupted: float
    resid: np.ndarray | None  # (layers, positions)
    heads: np.ndarray | None  # (layers, heads)
    moe: np.ndarray | None  # (MoE layers, positions)
    moe_layers: list[int]
    kinds: list[str]
    timings: dict[str, ScanTiming]

    def to_pandas(self) -> pd.DataFrame:
        """One row per patched piece: kind, layer, position or head, restored fraction."""
        import pandas as pd

        rows = []
        if self.resid is not None:
            for (layer, p), v in np.ndenumerate(self.resid):
                rows.append(
                    {"kind": "resid", "layer": layer, "position": p, "head": None, "restored": v}
                )
        if self.heads is not None:
            for (layer, h), v in np.ndenumerate(self.heads):
                if np.isfinite(v):
                    rows.append(
                        {"kind": "head", "layer": layer, "position": None, "head": h, "restored": v}
                    )
        if self.moe is not None:
            for (slot, p), v in np.ndenumerate(self.moe):
                rows.append(
                    {
                        "kind": "moe",
                        "layer": self.moe_layers[slot],
                        "position": p,
                        "head": None,
                        "restored": v,
                    }
                )
        return pd.DataFrame(rows)

    def best(self, kind: str = "resid") -> tuple[int, int, float]:
        """The (layer, position or head, restored) that restores most of ``kind``."""
        grid = {"resid": self.resid, "heads": self.heads, "moe": self.moe}.get(kind)
        if grid is None:
            raise LabError(f"this scan has no {kind!r} patching")
        filled = np.where(np.isfinite(grid), grid, -np.inf)
        row, col = np.unravel_index(np.argmax(filled), grid.shape)
        layer = self.moe_layers[row] if kind == "moe" else int(row)
        return layer, int(col), float(grid[row, col])

    def summary(self) -> str:
        parts = []
        for kind in ("resid", "heads", "moe"):
            if {"resid": self.resid, "heads": self.heads, "moe": self.moe}[kind] is not None:
                layer, col, v = self.best(kind)
                what = "head" if kind == "heads" else "token"
                parts.append(f"{kind} best L{layer} {what} {col} {v:.2f}")
        return (
            f"PatchingResult({self.model}: {len(self.clean_tokens)} tokens, "
            f"logit({self.answer_text!r}) − logit({self.wrong_text!r}) clean {self.ld_clean:.3f}, "
            f"corrupted {self.ld_corrupted:.3f}; {'; '.join(parts)})"
        )

    def payload(self) -> dict[str, Any]:
        return {
            "kind": "patching",
            "model": self.model,
            "clean": self.clean,
            "corrupted": self.corrupted,
            "clean_tokens": self.clean_tokens,
            "corrupted_tokens": self.corrupted_tokens,
            "answer": self.answer_text,
            "wrong": self.wrong_text,
            "ld_clean": round(self.ld_clean, 4),
            "ld_corrupted": round(self.ld_corrupted, 4),
            "resid": _grid(self.resid),
            "heads": _grid(self.heads),
            "moe": _grid(self.moe),
            "moe_layers": self.moe_layers,
            "kinds": self.kinds,
            "timings": {k: t.text() for k, t in self.timings.items()},
        }

    def to_html(self) -> str:
        toks = [
            c if c == x else f"{c}/{x}"
            for c, x in zip(self.clean_tokens, self.corrupted_tokens, strict=True)
        ]
        parts = [
            f"<b>Activation patching</b> · {esc(self.model)} · restored logit difference "
            f"logit({esc(self.answer_text)}) − logit({esc(self.wrong_text)}) "
            f"(0 = corrupted {self.ld_corrupted:.3f}, 1 = clean {self.ld_clean:.3f})"
            f"<div class='llmlab-prompt'>clean: {esc(self.clean)}<br>corrupted: "
            f"{esc(self.corrupted)}</div>"
        ]
        if self.resid is not None:
            rows = [f"L{i}" for i in range(self.resid.shape[0])]
            parts.append(_heat_table(self.resid, rows, toks, "residual stream: layer × token"))
        if self.heads is not None:
            rows = [f"L{i}" for i in range(self.heads.shape[0])]
            cols = [f"H{h}" for h in range(self.heads.shape[1])]
            parts.append(_heat_table(self.heads, rows, cols, "head outputs: layer × head"))
        if self.moe is not None:
            rows = [f"L{i}" for i in self.moe_layers]
            parts.append(_heat_table(self.moe, rows, toks, "MoE layer outputs: layer × token"))
        return card("".join(parts), css=HEAT_CSS)


@dataclass(repr=False)
class InterventionGeneration(Result):
    """The same prompt answered plainly and with interventions, side by side."""

    model: str
    prompt: str
    label: str
    plain: Any  # GenerationResult
    intervened: Any  # GenerationResult

    def summary(self) -> str:
        return (
            f"InterventionGeneration({self.model}, {self.label}: plain {self.plain.text!r} · "
            f"intervened {self.intervened.text!r})"
        )

    def to_text(self) -> str:
        return f"plain        : {self.plain.text}\n{self.label:<13}: {self.intervened.text}"

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            [
                {"variant": "plain", "text": self.plain.text},
                {"variant": self.label, "text": self.intervened.text},
            ]
        )

    def to_html(self) -> str:
        rows = "".join(
            f"<tr><th>{esc(name)}</th><td class='llmlab-text'>{esc(r.text)}</td></tr>"
            for name, r in (("plain", self.plain), (self.label, self.intervened))
        )
        return card(
            f"<b>Generation with interventions</b> · {esc(self.model)}"
            f"<div class='llmlab-prompt'>{esc(self.prompt)}</div><table>{rows}</table>"
        )
