"""The next-token distribution, and how temperature / top-k / top-p reshape and cut it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmlab.errors import LabError
from llmlab.html import card, esc
from llmlab.results import Result
from llmlab.tokens import token_texts

if TYPE_CHECKING:
    from llmlab.models.loaded import LoadedModel

#: Logits kept exactly; the rest of the vocabulary is summarised as a histogram (see below).
TOP_EXACT = 256
TAIL_BINS = 64


@dataclass(repr=False)
class NextTokenDistribution(Result):
    """The model's next-token logits for a prompt: the top ``TOP_EXACT`` exactly, and the rest
    of the vocabulary as a histogram of logits (``tail_centers``, ``tail_counts``).

    The histogram lets any temperature be applied to the whole vocabulary without shipping
    50k numbers: the tail's mass at temperature T is about sum(count * exp(center / T)).
    """

    model: str
    prompt: str
    token_ids: list[int]
    tokens: list[str]
    logits: list[float]
    tail_centers: list[float]
    tail_counts: list[int]
    vocab_size: int
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    shown: int = 20
    note: str = ""  # e.g. a served model's distribution is only the server's top log-probs
    _probs_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def reshape(
        self, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
    ) -> tuple[list[float], list[bool], float]:
        """Probabilities of the top tokens after temperature, and which survive the cuts.

        Returns ``(probs, kept, tail_mass)``: ``probs`` renormalised over the kept tokens,
        ``kept[i]`` whether token i survives top-k and top-p, and the probability mass that the
        untracked tail would get at this temperature before any cut.
        Mirrors ``applyFilters`` in ``widgets/next_token.js`` (the live view recomputes in the
        browser so sliders respond without a kernel round trip).
        """
        t = max(temperature, 1e-6)
        peak = self.logits[0] / t
        weights = [math.exp(x / t - peak) for x in self.logits]
        tail = sum(c * math.exp(x / t - peak) for x, c in zip(self.tail_centers, self.tail_counts))
        total = sum(weights) + tail
        probs = [w / total for w in weights]
        kept = [True] * len(probs)
        if top_k:
            kept = [i < top_k for i in range(len(probs))]
        if top_p is not None and top_p < 1:
            cumulative = 0.0
            for i, p in enumerate(probs):
                # A token survives if the mass before it is still below top_p.
                kept[i] = kept[i] and cumulative < top_p
                cumulative += p
        kept_mass = sum(p for p, k in zip(probs, kept) if k)
        tail_kept = not top_k and (top_p is None or top_p >= 1)
        norm = kept_mass + (tail / total if tail_kept else 0.0)
        return [p / norm if k else 0.0 for p, k in zip(probs, kept)], kept, tail / total

    def top(self, n: int | None = None) -> list[tuple[str, float]]:
        """The n most likely tokens with their probabilities at temperature 1."""
        probs, _, _ = self.reshape()
        return list(zip(self.tokens, probs))[: n or self.shown]

    def summary(self) -> str:
        token, p = self.top(1)[0]
        return f"NextTokenDistribution({self.model}: {self.prompt[-40:]!r} -> {token!r} {p:.2f})"

    def to_text(self) -> str:
        probs, kept, _ = self.reshape(self.temperature, self.top_k, self.top_p)
        lines = [f"next token after {self.prompt[-60:]!r} ({self.model})"]
        for tok, p, k in zip(self.tokens[: self.shown], probs, kept):
            lines.append(f"{tok!r:>16} {p:6.3f} {'#' * round(40 * p)}{'' if k else '  (cut)'}")
        return "\n".join(lines)

    def to_html(self) -> str:
        base, _, _ = self.reshape()
        probs, kept, _ = self.reshape(self.temperature, self.top_k, self.top_p)
        peak = max(max(base[: self.shown]), max(probs[: self.shown]), 1e-9)
        rows = []
        for i in range(self.shown):
            tok = self.tokens[i].replace("\n", "↵").replace(" ", "·")
            rows.append(
                f"<tr style='opacity:{1 if kept[i] else 0.35}'><td><code>{esc(tok)}</code></td>"
                f"<td style='width:320px'><div style='position:relative;height:14px'>"
                f"<div style='position:absolute;height:14px;width:{100 * base[i] / peak:.1f}%;"
                f"background:#d0d7de'></div><div style='position:absolute;height:8px;top:3px;"
                f"width:{100 * probs[i] / peak:.1f}%;background:#0969da'></div></div></td>"
                f"<td>{base[i]:.3f}</td><td>{probs[i]:.3f}</td></tr>"
            )
        cuts = f"T={self.temperature:g}, top-k={self.top_k or 'off'}, top-p={self.top_p or 'off'}"
        shown = ("…" if len(self.prompt) > 80 else "") + self.prompt[-80:]
        head = (
            f"<div><b>Next token after</b> <span class='llmlab-prompt'>{esc(shown)}"
            f"</span></div><table><tr><th>token</th><th>grey: T=1 · blue: {esc(cuts)}</th>"
            "<th>p (T=1)</th><th>p (reshaped)</th></tr>"
        )
        return card(
            head + "".join(rows) + f"</table><div class='llmlab-stats'>{esc(self.model)} · "
            f"faded rows are cut by top-k/top-p · "
            f"{esc(self.note) if self.note else f'vocabulary {self.vocab_size}'}</div>"
        )

    def payload(self) -> dict[str, Any]:
        """What the live view needs (plain JSON)."""
        return {
            "prompt": self.prompt,
            "tokens": self.tokens,
            "logits": [round(x, 4) for x in self.logits],
            "tail_centers": [round(x, 4) for x in self.tail_centers],
            "tail_counts": self.tail_counts,
            "vocab_size": self.vocab_size,
            "shown": self.shown,
            "note": self.note,
        }


def next_token_distribution(
    lm: LoadedModel,
    prompt: str,
    *,
    raw: bool = True,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    shown: int = 20,
) -> NextTokenDistribution:
    """One forward pass over ``prompt``; the distribution of the token that would come next.

    ``raw`` defaults to True: "The capital of France is" should be continued, not answered.
    """
    import torch

    from llmlab.generation.engine import encode_prompt

    if not isinstance(shown, int) or shown < 1:
        raise LabError(f"the number of tokens to show must be at least 1, got {shown}")
    from llmlab.generation.settings import GenerationSettings

    GenerationSettings(temperature=temperature, top_k=top_k, top_p=top_p)  # the same checks
    ids = encode_prompt(lm, prompt, raw=raw)
    with lm.exclusive("next-token view"), torch.inference_mode():
        logits = lm.model(ids).logits[0, -1].float().cpu()
    order = torch.argsort(logits, descending=True)
    top = order[:TOP_EXACT]
    rest = logits[order[TOP_EXACT:]]
    counts = torch.histc(rest, bins=TAIL_BINS, min=float(rest.min()), max=float(rest.max()))
    edges = torch.linspace(float(rest.min()), float(rest.max()), TAIL_BINS + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    nonzero = counts > 0
    return NextTokenDistribution(
        model=lm.name,
        prompt=prompt,
        token_ids=top.tolist(),
        tokens=token_texts(lm.tokenizer, top.tolist()),
        logits=logits[top].tolist(),
        tail_centers=centers[nonzero].tolist(),
        tail_counts=[int(c) for c in counts[nonzero].tolist()],
        vocab_size=int(logits.shape[0]),
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        shown=min(shown, TOP_EXACT),
    )
