"""Speculative decoding made visible: what was drafted, kept and replaced at every step.

transformers' assisted generation asks a candidate generator for drafts
(``get_candidates``), verifies them in one target pass, then reports the outcome back
(``update_candidate_strategy(input_ids, scores, num_matches)``, with ``input_ids`` already
extended by the kept tokens). :class:`DraftRecorder` wraps those two methods on whatever
generator transformers built (prompt lookup, a draft model, a self-draft, or any generator a
new speculation mode brings), so generation itself is untouched and greedy output identical.

Per verification step it keeps the drafted ids and the ids the step added; the accepted drafts
are the leading drafts the step kept, and the step's last added id (when it is not a kept
draft) is the target's own token: the replacement of the first rejected draft, or a bonus
token after all drafts were accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmlab.html import card, esc
from llmlab.results import Result


@dataclass
class DraftStep:
    """One target pass: ``drafted`` ids proposed, ``added`` ids the step appended."""

    drafted: list[int]
    added: list[int]

    @property
    def accepted(self) -> int:
        """How many leading drafts the target kept."""
        n = 0
        for d, a in zip(self.drafted, self.added):
            if d != a:
                break
            n += 1
        return n

    @property
    def target_token(self) -> int | None:
        """The token the target chose itself (after the kept drafts), if the step added one."""
        return self.added[self.accepted] if len(self.added) > self.accepted else None


@dataclass(repr=False)
class DraftTrace(Result):
    """Every verification step of one speculative generation, with token texts for views."""

    model: str
    method: str  # the acceleration label, e.g. "spec=prompt-lookup"
    steps: list[DraftStep]
    texts: dict[int, str] = field(default_factory=dict)  # token id -> shown text

    @property
    def drafted(self) -> int:
        return sum(len(s.drafted) for s in self.steps)

    @property
    def accepted(self) -> int:
        return sum(s.accepted for s in self.steps)

    @property
    def new_tokens(self) -> int:
        return sum(len(s.added) for s in self.steps)

    def acceptance_by_position(self) -> list[dict[str, Any]]:
        """For each draft position (1 = first drafted token): how often a draft reached it
        and how often the target kept it there."""
        longest = max((len(s.drafted) for s in self.steps), default=0)
        rows = []
        for i in range(longest):
            drafted = sum(len(s.drafted) > i for s in self.steps)
            accepted = sum(s.accepted > i for s in self.steps)
            rows.append(
                {
                    "position": i + 1,
                    "drafted": drafted,
                    "accepted": accepted,
                    "rate": round(accepted / drafted, 3) if drafted else 0.0,
                }
            )
        return rows

    def to_pandas(self):
        """One row per verification step."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "step": i,
                    "drafted": len(s.drafted),
                    "accepted": s.accepted,
                    "added": len(s.added),
                    "drafted text": "".join(self.texts.get(t, "") for t in s.drafted),
                    "added text": "".join(self.texts.get(t, "") for t in s.added),
                }
                for i, s in enumerate(self.steps)
            ]
        )

    def summary(self) -> str:
        rate = f"{self.accepted / self.drafted:.2f}" if self.drafted else "–"
        return (
            f"DraftTrace({self.model} {self.method}: {len(self.steps)} target passes, "
            f"{self.drafted} drafted, {self.accepted} accepted (rate {rate}), "
            f"{self.new_tokens} new tokens)"
        )

    def to_text(self) -> str:
        """The text with drafts marked for terminals: [kept drafts] ~rejected~ target tokens."""
        parts = []
        for s in self.steps:
            k = s.accepted
            kept = "".join(self.texts.get(t, "") for t in s.added[:k])
            rejected = "".join(self.texts.get(t, "") for t in s.drafted[k:])
            parts.append(
                (f"[{kept}]" if kept else "")
                + (f"~{rejected}~" if rejected else "")
                + "".join(self.texts.get(t, "") for t in s.added[k:])
            )
        by_position = " · ".join(
            f"{r['position']}: {r['rate']:.2f} ({r['accepted']}/{r['drafted']})"
            for r in self.acceptance_by_position()
        )
        return (
            f"{self.summary()}\n{''.join(parts)}\n"
            f"[accepted drafts] ~rejected drafts~ target tokens · acceptance by draft position: "
            f"{by_position or 'nothing drafted'}"
        )

    def payload(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "method": self.method,
            "steps": [
                {"drafted": s.drafted, "added": s.added, "accepted": s.accepted} for s in self.steps
            ],
            "texts": {str(k): v for k, v in self.texts.items()},
            "by_position": self.acceptance_by_position(),
            "drafted": self.drafted,
            "accepted": self.accepted,
            "new_tokens": self.new_tokens,
        }

    def to_html(self) -> str:
        """Reduced offline copy: the text with kept, struck and target tokens, and a table."""
        spans = []
        for s in self.steps:
            k = s.accepted
            spans += [f'<span class="acc">{esc(self.texts.get(t, ""))}</span>' for t in s.added[:k]]
            spans += [f'<s class="rej">{esc(self.texts.get(t, ""))}</s>' for t in s.drafted[k:]]
            spans += [f'<span class="tgt">{esc(self.texts.get(t, ""))}</span>' for t in s.added[k:]]
            spans.append('<span class="sep">|</span>')
        rows = "".join(
            f"<tr><td>{r['position']}</td><td>{r['drafted']}</td><td>{r['accepted']}</td>"
            f"<td>{r['rate']:.2f}</td></tr>"
            for r in self.acceptance_by_position()
        )
        css = (
            ".acc{background:#dafbe1}.rej{color:#cf222e;background:#ffebe9}"
            ".tgt{background:#ddf4ff}.sep{color:#d0d7de}"
        )
        return card(
            f"<b>Drafts</b> · {esc(self.summary())}"
            f'<div class="llmlab-text">{"".join(spans)}</div>'
            '<div class="llmlab-stats">green: drafted and accepted · red, struck: drafted and '
            "rejected · blue: the target's own token · | : one target pass</div>"
            "<table><tr><th>draft position</th><th>drafted</th><th>accepted</th>"
            f"<th>rate</th></tr>{rows}</table>",
            css=css,
        )


class DraftRecorder:
    """Wraps a transformers candidate generator to record each verification step."""

    def __init__(self) -> None:
        self.steps: list[DraftStep] = []
        self._pending: tuple[int, list[int]] | None = None

    def attach(self, generator: Any) -> Any:
        """Record ``generator``'s drafts and outcomes (wraps two instance methods)."""
        get = generator.get_candidates
        update = generator.update_candidate_strategy

        def get_candidates(input_ids: Any, *args: Any, **kwargs: Any) -> Any:
            ids, logits = get(input_ids, *args, **kwargs)
            n = input_ids.shape[1]
            self._pending = (n, ids[0, n:].tolist())
            return ids, logits

        def update_candidate_strategy(input_ids: Any, *args: Any, **kwargs: Any) -> Any:
            if self._pending is not None:
                n, drafted = self._pending
                self.steps.append(DraftStep(drafted=drafted, added=input_ids[0, n:].tolist()))
                self._pending = None
            return update(input_ids, *args, **kwargs)

        generator.get_candidates = get_candidates
        generator.update_candidate_strategy = update_candidate_strategy
        return generator

    @property
    def accepted(self) -> int:
        return sum(s.accepted for s in self.steps)

    def trace(self, model: str, method: str, tokenizer: Any) -> DraftTrace:
        from llmlab.tokens import token_text

        ids = {t for s in self.steps for t in (*s.drafted, *s.added)}
        texts = {t: token_text(tokenizer, t) for t in sorted(ids)}
        return DraftTrace(model=model, method=method, steps=list(self.steps), texts=texts)
