"""Typed attention results: one variant (:class:`AttentionResult`) or two compared
(:class:`AttentionComparison`). Both render live (``payload`` + on-demand ``answer``) and as
static offline HTML (``to_html``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from llmlab.attention import encode
from llmlab.errors import LabError
from llmlab.results import Result

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from llmlab.attention.capture import Captured

#: Lines per query token in the head view (the strongest keys; weaker lines are invisible).
LINES_K = 12
STAT_NAMES = {
    "entropy": "entropy (bits)",
    "sink": "sink mass",
    "prev": "previous-token",
    "distance": "mean distance",
}


@dataclass(repr=False)
class AttentionResult(Result):
    """Every layer's and head's attention over one token sequence.

    ``tokens[:n_prompt]`` is the input; the rest (if any) was generated. Full-resolution
    weights stay here in float16 (``head()``, ``row()``); the live view receives thumbnails
    and fetches full heads and rows on demand.
    """

    model: str
    family: str
    label: str  # what this variant is, e.g. "smollm2 (float32, sdpa)"
    text: str
    tokens: list[str]
    token_ids: list[int]
    n_prompt: int
    n_kv_heads: int
    captured: Captured = field(compare=False)
    layer: int | None = None
    head: int | None = None

    # -- shape and checks ---------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return int(self.captured.weights.shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.captured.weights.shape[1])

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    def kv_head(self, head: int) -> int:
        """The key/value head that query ``head`` reads (grouped-query attention)."""
        return head // (self.n_heads // self.n_kv_heads)

    def check(self, layer: int | None = None, head: int | None = None) -> None:
        if layer is not None and not 0 <= layer < self.n_layers:
            raise LabError(
                f"layer {layer} is out of range: {self.model} has layers 0-{self.n_layers - 1}"
            )
        if head is not None and not 0 <= head < self.n_heads:
            raise LabError(
                f"head {head} is out of range: {self.model} has heads 0-{self.n_heads - 1}"
            )

    # -- data ---------------------------------------------------------------------------------
    def weights(self, layer: int, head: int) -> torch.Tensor:
        self.check(layer, head)
        return self.captured.weights[layer, head].float()

    def head_weights(self, layer: int, head: int) -> np.ndarray:
        """Full-resolution weights of one head, (n, n): row = query, column = key."""
        return self.weights(layer, head).numpy()

    def row(self, layer: int, query: int) -> np.ndarray:
        """What token ``query`` attends to in every head of ``layer``: (heads, n)."""
        self.check(layer)
        if not 0 <= query < self.n_tokens:
            raise LabError(f"token {query} is out of range: 0-{self.n_tokens - 1}")
        return self.captured.weights[layer, :, query].float().numpy()

    def stats(self) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self.captured.stats.items()}

    def to_pandas(self) -> pd.DataFrame:
        """One row per head: entropy, sink mass, previous-token score, mean distance."""
        import pandas as pd

        rows = []
        stats = self.stats()
        for layer in range(self.n_layers):
            for head in range(self.n_heads):
                rows.append(
                    {
                        "layer": layer,
                        "head": head,
                        "kv_head": self.kv_head(head),
                        **{STAT_NAMES[k]: float(stats[k][layer, head]) for k in STAT_NAMES},
                    }
                )
        return pd.DataFrame(rows)

    def initial_layer(self) -> int:
        return self.layer if self.layer is not None else self.n_layers // 2

    # -- rendering ----------------------------------------------------------------------------
    def summary(self) -> str:
        stats = self.stats()
        layer, head = np.unravel_index(np.argmax(stats["prev"]), stats["prev"].shape)
        generated = self.n_tokens - self.n_prompt
        gen = f" + {generated} generated" if generated else ""
        return (
            f"AttentionResult({self.label}: {self.n_prompt} tokens{gen}, {self.n_layers} layers "
            f"× {self.n_heads} heads ({self.n_kv_heads} KV); strongest previous-token head "
            f"L{layer}H{head} {stats['prev'][layer, head]:.2f})"
        )

    def variant_payload(self) -> dict[str, Any]:
        """The part of the payload that differs between compared variants."""
        return {
            "label": self.label,
            "thumb": {
                "size": int(self.captured.thumbs.shape[-1]),
                "enc": "sqrt8",
                "data": encode.b64(encode.sqrt8(self.captured.thumbs)),
            },
            "stats": {k: np.round(v, 4).tolist() for k, v in self.stats().items()},
        }

    def lines(self, layer: int, k: int = LINES_K) -> dict[str, Any]:
        """The strongest ``k`` keys of every query in every head of ``layer`` (head view)."""
        self.check(layer)
        index, value = encode.top_lines(self.captured.weights[layer], k)
        return {
            "layer": layer,
            "k": int(index.shape[-1]),
            "index": encode.b64(index),
            "value": encode.b64(value),
        }

    def payload(self) -> dict[str, Any]:
        layer = self.initial_layer()
        return {
            "model": self.model,
            "family": self.family,
            "tokens": self.tokens,
            "n_prompt": self.n_prompt,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "layer": layer,
            "head": self.head,
            "a": self.variant_payload(),
            "lines": self.lines(layer),
            "compare": None,
        }

    def answer(self, request: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
        """Serve the live view's on-demand requests (full heads, head-view lines, rows)."""
        return answer_request(self, None, request)

    def to_html(self) -> str:
        from llmlab.attention.static import render

        return render(self, None)


@dataclass(repr=False)
class AttentionComparison(Result):
    """The same tokens through two variants ``a`` and ``b``: per-head differences (b - a).

    ``change[layer, head]`` is the mean total-variation distance between the two heads' rows
    (0: identical, 1: disjoint), the ranking key of :meth:`ranking`.
    """

    a: AttentionResult
    b: AttentionResult
    change: np.ndarray  # (L, H) mean total variation per query row
    max_abs: np.ndarray  # (L, H) largest single weight difference
    diff_thumbs: torch.Tensor  # (L, H, T, T) signed, max-|d| pooled

    def ranking(self) -> pd.DataFrame:
        """Heads ordered by how much their attention changed, most first."""
        import pandas as pd

        rows = [
            {
                "layer": layer,
                "head": head,
                "kv_head": self.a.kv_head(head),
                "change (mean TV)": float(self.change[layer, head]),
                "max |Δ|": float(self.max_abs[layer, head]),
            }
            for layer in range(self.a.n_layers)
            for head in range(self.a.n_heads)
        ]
        frame = pd.DataFrame(rows).sort_values("change (mean TV)", ascending=False)
        return frame.reset_index(drop=True)

    def to_pandas(self) -> pd.DataFrame:
        return self.ranking()

    def summary(self) -> str:
        layer, head = np.unravel_index(np.argmax(self.change), self.change.shape)
        return (
            f"AttentionComparison({self.a.label} vs {self.b.label}: {self.a.n_tokens} tokens; "
            f"mean change {self.change.mean():.4f}, most changed L{layer}H{head} "
            f"{self.change[layer, head]:.4f})"
        )

    def payload(self) -> dict[str, Any]:
        data = self.a.payload()
        data["compare"] = {
            **self.b.variant_payload(),
            "diff": {
                "size": int(self.diff_thumbs.shape[-1]),
                "enc": "signed8",
                "data": encode.b64(encode.signed8(self.diff_thumbs)),
            },
            "change": np.round(self.change, 5).tolist(),
            "max_abs": np.round(self.max_abs, 5).tolist(),
        }
        return data

    def answer(self, request: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
        return answer_request(self.a, self.b, request)

    def to_html(self) -> str:
        from llmlab.attention.static import render

        return render(self.a, self)


def answer_request(
    a: AttentionResult, b: AttentionResult | None, request: dict[str, Any]
) -> tuple[dict[str, Any], list[bytes]]:
    """One on-demand request of the live view -> (JSON reply, binary buffers).

    ``{"kind": "head", layer, head, which: a|b|diff}`` -> the full n×n head (u16 or s16);
    ``{"kind": "lines", layer, which}`` -> top-k lines of a layer;
    ``{"kind": "row", layer, query, which}`` -> exact float32 weights of one query, all heads.
    """
    reply: dict[str, Any] = {k: request.get(k) for k in ("id", "kind", "layer", "head", "which")}
    try:
        which = request.get("which") or "a"
        if which != "a" and b is None:
            raise LabError("this view has no second variant")
        result = b if which == "b" else a
        layer = int(request["layer"])
        kind = request.get("kind")
        if kind == "head":
            head = int(request["head"])
            if which == "diff":
                d = b.weights(layer, head) - a.weights(layer, head)
                return reply | {"enc": "s16", "n": a.n_tokens}, [encode.s16(d).tobytes()]
            data = encode.u16(result.weights(layer, head))
            return reply | {"enc": "u16", "n": a.n_tokens}, [data.tobytes()]
        if kind == "lines":
            return reply | {"lines": result.lines(layer)}, []
        if kind == "row":
            values = result.row(layer, int(request["query"])).astype("<f4")
            return reply | {"query": int(request["query"])}, [values.tobytes()]
        raise LabError(f"unknown request {kind!r}")
    except (LabError, KeyError, ValueError, TypeError) as err:
        return reply | {"error": str(err)}, []
