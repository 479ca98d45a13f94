"""Typed logit-lens results: one variant (:class:`LensResult`) or two compared
(:class:`LensComparison`). Both render live (``payload``) and as static offline HTML."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from llmlab.errors import LabError
from llmlab.results import Result

if TYPE_CHECKING:
    import pandas as pd


@dataclass(repr=False)
class LensResult(Result):
    """Every layer's reading of the next token over one token sequence.

    Row ``r`` is the residual stream after ``r`` layers (row 0: the embeddings; the last row:
    the model's own output), read through the final norm and the unembedding. Column ``i`` is
    the prediction made at token ``i`` (of token ``i + 1``). Per cell: the top tokens and their
    probabilities, the entropy (nats), the KL divergence from the final distribution to this
    row's (nats), and the rank and probability this row gives the model's final top-1 token.
    """

    model: str
    family: str
    label: str  # what this variant is, e.g. "smollm2 (float32)"
    text: str
    tokens: list[str]
    token_ids: list[int]
    n_prompt: int
    rows: list[str]  # row labels: "embeddings", "layer 1", ..., "layer L (output)"
    reading: str  # how a row is read, in words (final norm -> unembedding -> ...)
    top_ids: np.ndarray = field(compare=False)  # (R, n, K)
    top_probs: np.ndarray = field(compare=False)  # (R, n, K)
    entropy: np.ndarray = field(compare=False)  # (R, n) nats
    kl: np.ndarray = field(compare=False)  # (R, n) KL(final || row) nats
    final_rank: np.ndarray = field(compare=False)  # (R, n) 0 = the final top-1 is top here
    final_prob: np.ndarray = field(compare=False)  # (R, n)
    vocab: dict[int, str] = field(compare=False, default_factory=dict)  # id -> shown text
    max_error: float = 0.0  # last row read through the lens vs the model's logits (relative)

    # -- shape --------------------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        return len(self.rows)

    @property
    def n_layers(self) -> int:
        return self.n_rows - 1

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    def check(self, row: int | None = None, position: int | None = None) -> None:
        if row is not None and not -self.n_rows <= row < self.n_rows:
            raise LabError(f"row {row} is out of range: rows 0-{self.n_layers}")
        if position is not None and not -self.n_tokens <= position < self.n_tokens:
            raise LabError(f"token {position} is out of range: 0-{self.n_tokens - 1}")

    # -- data ---------------------------------------------------------------------------------
    def top(self, row: int, position: int) -> list[tuple[str, float]]:
        """The top tokens (text, probability) row ``row`` predicts at ``position``."""
        self.check(row, position)
        return [
            (self.vocab[int(i)], float(p))
            for i, p in zip(self.top_ids[row, position], self.top_probs[row, position])
        ]

    def layer_table(self) -> pd.DataFrame:
        """One row per layer: mean entropy, mean KL to the final layer, how often its top-1 is
        already the final top-1, and the median rank it gives the final top-1."""
        import pandas as pd

        agree = self.top_ids[:, :, 0] == self.top_ids[-1:, :, 0]
        return pd.DataFrame(
            {
                "row": self.rows,
                "entropy (nats)": self.entropy.mean(1),
                "KL to final (nats)": self.kl.mean(1),
                "top-1 = final": agree.mean(1),
                "median rank of final": np.median(self.final_rank, axis=1),
            }
        )

    def to_pandas(self) -> pd.DataFrame:
        """One row per (layer, token): the top token, its probability, the rank of the final
        prediction, entropy and KL to the final layer."""
        import pandas as pd

        R, n = self.n_rows, self.n_tokens
        return pd.DataFrame(
            {
                "row": np.repeat(np.arange(R), n),
                "layer": np.repeat(np.array(self.rows, dtype=object), n),
                "position": np.tile(np.arange(n), R),
                "token": np.tile(np.array(self.tokens, dtype=object), R),
                "top token": [self.vocab[int(i)] for i in self.top_ids[:, :, 0].ravel()],
                "p": self.top_probs[:, :, 0].ravel(),
                "rank of final": self.final_rank.ravel(),
                "p of final": self.final_prob.ravel(),
                "entropy (nats)": self.entropy.ravel(),
                "KL to final (nats)": self.kl.ravel(),
            }
        )

    def settles_at(self) -> int:
        """The first row from which the top-1 stays the final top-1 for most tokens."""
        agree = (self.top_ids[:, :, 0] == self.top_ids[-1:, :, 0]).mean(1)
        row = self.n_rows - 1
        while row > 0 and agree[row - 1] >= 0.5:
            row -= 1
        return row

    # -- rendering ----------------------------------------------------------------------------
    def summary(self) -> str:
        mid, settled = self.n_rows // 2, self.rows[self.settles_at()]
        return (
            f"LensResult({self.label}: {self.n_tokens} tokens × {self.n_rows} rows "
            f"(embeddings + {self.n_layers} layers); top-1 settles at {settled}"
            f"; mean KL to final at {self.rows[mid]} {self.kl[mid].mean():.2f} nats)"
        )

    def variant_payload(self, index: dict[int, int]) -> dict[str, Any]:
        """The part of the payload that differs between compared variants; token ids map
        through ``index`` into the payload's shared vocabulary list."""
        top = np.vectorize(index.__getitem__, otypes=[np.int64])(self.top_ids)
        return {
            "label": self.label,
            "reading": self.reading,
            "top": top.tolist(),
            "p": np.round(self.top_probs, 4).tolist(),
            "entropy": np.round(self.entropy, 3).tolist(),
            "kl": np.round(self.kl, 4).tolist(),
            "rank": self.final_rank.tolist(),
            "p_final": np.round(self.final_prob, 4).tolist(),
        }

    def payload(self, others: tuple[LensResult, ...] = ()) -> dict[str, Any]:
        ids = sorted(set(self.vocab).union(*(o.vocab for o in others)))
        index = {i: k for k, i in enumerate(ids)}
        vocab = {**self.vocab, **{i: t for o in others for i, t in o.vocab.items()}}
        return {
            "model": self.model,
            "family": self.family,
            "tokens": self.tokens,
            "n_prompt": self.n_prompt,
            "rows": self.rows,
            "vocab": [vocab[i] for i in ids],
            "a": self.variant_payload(index),
            "compare": None,
        }

    def to_html(self) -> str:
        from llmlab.lens.static import render

        return render(self, None)


@dataclass(repr=False)
class LensComparison(Result):
    """The same tokens through two variants ``a`` and ``b``: where their readings part.

    ``kl[row, i]`` is KL(a || b) between the two variants' readings of row ``row`` at token
    ``i`` (nats); ``agree[row, i]``: their top-1 tokens are the same.
    """

    a: LensResult
    b: LensResult
    kl: np.ndarray  # (R, n)
    agree: np.ndarray  # (R, n) bool

    def layer_table(self) -> pd.DataFrame:
        """Per layer: mean KL(a || b), top-1 agreement, and each variant's KL to its final."""
        import pandas as pd

        return pd.DataFrame(
            {
                "row": self.a.rows,
                "KL(A‖B) (nats)": self.kl.mean(1),
                "top-1 agreement": self.agree.mean(1),
                "A: KL to final": self.a.kl.mean(1),
                "B: KL to final": self.b.kl.mean(1),
            }
        )

    def to_pandas(self) -> pd.DataFrame:
        return self.layer_table()

    def first_divergence(self) -> int | None:
        """The first row where the two variants' top-1 differ on any token (None: never)."""
        rows = np.flatnonzero(~self.agree.all(1))
        return int(rows[0]) if rows.size else None

    def summary(self) -> str:
        worst = int(np.argmax(self.kl.mean(1)))
        out = self.agree[-1].mean()
        return (
            f"LensComparison({self.a.label} vs {self.b.label}: {self.a.n_tokens} tokens; "
            f"output top-1 agreement {out:.0%}; largest mean KL {self.kl[worst].mean():.4f} "
            f"nats at {self.a.rows[worst]})"
        )

    def payload(self) -> dict[str, Any]:
        data = self.a.payload(others=(self.b,))
        ids = sorted(set(self.a.vocab) | set(self.b.vocab))
        index = {i: k for k, i in enumerate(ids)}
        data["compare"] = {
            **self.b.variant_payload(index),
            "kl_ab": np.round(self.kl, 5).tolist(),
            "agree": self.agree.astype(np.int8).tolist(),
        }
        return data

    def to_html(self) -> str:
        from llmlab.lens.static import render

        return render(self.a, self)
