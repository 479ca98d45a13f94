"""Typed attention results: one variant (:class:`AttentionResult`) or two compared
(:class:`AttentionComparison`). Both render live (``payload`` + on-demand ``answer``) and as
static offline HTML (``to_html``).

A result has one or more stacks (see :class:`llmlab.attention.capture.Stack`): "self" for a
decoder-only model, "encoder" for BERT, "encoder", "decoder" and "cross" for T5/BART. Methods
take ``stack=`` (default: the first one). Layer numbers are the model's own; a hybrid model's
layers without attention, and layers left out with ``layers=``, are listed but hold no weights.
"""

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

    from llmlab.attention.capture import Captured, Stack

#: Lines per query token in the head view (the strongest keys; weaker lines are invisible).
LINES_K = 12
#: The Link tab receives every head's weights at once up to this many values (24 tokens of
#: the default model: 155,520); longer inputs ask the kernel per token pair.
LINK_TABLE_VALUES = 400_000
STAT_NAMES = {
    "entropy": "entropy (bits)",
    "sink": "sink mass",
    "prev": "previous-token",
    "distance": "mean distance",
}


@dataclass(repr=False)
class AttentionResult(Result):
    """Attention of every captured layer and head over one token sequence.

    ``tokens[:n_prompt]`` is the input; the rest (if any) was generated. For an
    encoder-decoder model ``target_tokens`` are the decoder's tokens (its start token and what
    it generated). Weights are recomputed on demand from the kept queries and keys
    (``head_weights()``, ``row()``); the live view receives thumbnails and fetches the rest.
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
    target_tokens: list[str] | None = None
    target_ids: list[int] | None = None
    link: tuple[int, int] | None = None  # (query, key) the view's Link tab opens on

    # -- shape and checks ---------------------------------------------------------------------
    def stack(self, name: str | None = None) -> Stack:
        if name is None:
            return self.captured.main
        if name not in self.captured.stacks:
            raise LabError(
                f"{self.model} has no {name!r} attention; it has {', '.join(self.stack_names)}"
            )
        return self.captured.stacks[name]

    @property
    def stack_names(self) -> list[str]:
        return list(self.captured.stacks)

    @property
    def n_layers(self) -> int:
        """Layers of the first stack, with or without captured weights."""
        return len(self.captured.main.layers)

    @property
    def layers(self) -> list[int]:
        """The captured layers of the first stack."""
        return self.captured.main.captured

    @property
    def n_heads(self) -> int:
        return self.captured.main.n_heads

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    def tokens_of(self, axis: str) -> list[str]:
        return self.target_tokens if axis == "target" else self.tokens

    def kv_head(self, head: int, stack: str | None = None) -> int:
        """The key/value head that query ``head`` reads (grouped-query attention)."""
        s = self.stack(stack)
        return head // (s.n_heads // s.n_kv_heads)

    def check(self, layer: int | None = None, head: int | None = None, stack=None) -> None:
        s = self.stack(stack)
        if layer is not None:
            if not 0 <= layer < len(s.layers):
                raise LabError(
                    f"layer {layer} is out of range: {self.model} has layers 0-{len(s.layers) - 1}"
                )
            s.slot(layer)
        if head is not None and not 0 <= head < s.n_heads:
            raise LabError(f"head {head} is out of range: {self.model} has heads 0-{s.n_heads - 1}")

    # -- data ---------------------------------------------------------------------------------
    def weights(self, layer: int, head: int, stack: str | None = None) -> torch.Tensor:
        """Full weights of one head, (queries, keys) float32, recomputed from the kept queries
        and keys exactly as the forward pass computed them."""
        self.check(layer, head, stack)
        return self.stack(stack).head(layer, head)

    def head_weights(self, layer: int, head: int, stack: str | None = None) -> np.ndarray:
        """Full-resolution weights of one head, (n, n): row = query, column = key."""
        return self.weights(layer, head, stack).numpy()

    def row(self, layer: int, query: int, stack: str | None = None) -> np.ndarray:
        """What token ``query`` attends to in every head of ``layer``: (heads, keys)."""
        self.check(layer, None, stack)
        s = self.stack(stack)
        n = len(self.tokens_of(s.queries))
        if not 0 <= query < n:
            raise LabError(f"token {query} is out of range: 0-{n - 1}")
        return s.row(layer, query).numpy()

    def link_weights(self, query: int, key: int, stack: str | None = None) -> np.ndarray:
        """How much token ``query`` attends to token ``key`` in every captured head:
        (captured layers, heads) float32, exact (recomputed as the forward pass did)."""
        s = self.stack(stack)
        nq, nk = len(self.tokens_of(s.queries)), len(self.tokens_of(s.keys))
        if not 0 <= query < nq:
            raise LabError(f"query token {query} is out of range: 0-{nq - 1}")
        if not 0 <= key < nk:
            raise LabError(f"key token {key} is out of range: 0-{nk - 1}")
        return np.stack([s.row(layer, query)[:, key].numpy() for layer in s.captured])

    def token_index(self, token: int | str, *, before: int | None = None) -> int:
        """A token by position, or by its text (stripped; the last match, or the last one
        before position ``before``)."""
        if isinstance(token, int) or (isinstance(token, str) and token.lstrip("-").isdigit()):
            index = int(token)
            if not 0 <= index < self.n_tokens:
                raise LabError(f"token {index} is out of range: 0-{self.n_tokens - 1}")
            return index
        found = [
            i
            for i, t in enumerate(self.tokens)
            if t.strip() == token.strip() and (before is None or i < before)
        ]
        if not found:
            raise LabError(f"no token {token!r} in the text; its tokens: {self.tokens}")
        return found[-1]

    def set_link(self, query: int | str, key: int | str) -> AttentionResult:
        """Open the view's Link tab on ``query`` → ``key`` (positions or token texts)."""
        q = self.token_index(query)
        k = self.token_index(key, before=q + 1 if isinstance(key, str) else None)
        self.link_weights(q, k)  # checks both ranges
        self.link = (q, k)
        return self

    def links(self, query: int, key: int, stack: str | None = None) -> pd.DataFrame:
        """Which heads link two tokens: every captured head ranked by the weight query
        token ``query`` puts on key token ``key``, strongest first."""
        import pandas as pd

        s = self.stack(stack)
        w = self.link_weights(query, key, stack)
        rows = [
            {"layer": layer, "head": head, "weight": float(w[slot, head])}
            for slot, layer in enumerate(s.captured)
            for head in range(s.n_heads)
        ]
        frame = pd.DataFrame(rows).sort_values("weight", ascending=False, kind="stable")
        return frame.reset_index(drop=True)

    def link_table(self, stack: str | None = None) -> np.ndarray | None:
        """Every captured head's full weights, (C, H, nq, nk) uint16 (weight × 65535), for
        the Link tab to rank heads for any token pair without asking again; None when that
        would pass :data:`LINK_TABLE_VALUES` (long inputs ask per pair)."""
        s = self.stack(stack)
        nq, nk = len(self.tokens_of(s.queries)), len(self.tokens_of(s.keys))
        if len(s.captured) * s.n_heads * nq * nk > LINK_TABLE_VALUES:
            return None
        out = np.empty((len(s.captured), s.n_heads, nq, nk), dtype="<u2")
        for slot, layer in enumerate(s.captured):
            for r0, r1, p in s.layer_rows(layer):
                out[slot, :, r0:r1] = encode.u16(p[..., :nk])
        return out

    def stats(self, stack: str | None = None) -> dict[str, np.ndarray]:
        """Per-head statistics of the captured layers: name -> (captured layers, heads)."""
        return {k: v.numpy() for k, v in self.stack(stack).stats.items()}

    def to_pandas(self) -> pd.DataFrame:
        """One row per captured head: entropy, sink mass, previous-token score, mean distance
        (a "stack" column first when the model has several)."""
        import pandas as pd

        rows = []
        many = len(self.captured.stacks) > 1
        for name, s in self.captured.stacks.items():
            stats = self.stats(name)
            for slot, layer in enumerate(s.captured):
                for head in range(s.n_heads):
                    rows.append(
                        {
                            **({"stack": name} if many else {}),
                            "layer": layer,
                            "head": head,
                            "kv_head": self.kv_head(head, name),
                            **{STAT_NAMES[k]: float(v[slot, head]) for k, v in stats.items()},
                        }
                    )
        return pd.DataFrame(rows)

    def initial_layer(self, stack: str | None = None) -> int:
        captured = self.stack(stack).captured
        if self.layer is not None and self.layer in captured:
            return self.layer
        return captured[len(captured) // 2]

    # -- rendering ----------------------------------------------------------------------------
    def summary(self) -> str:
        s = self.captured.main
        stats = self.stats()
        generated = self.n_tokens - self.n_prompt
        gen = f" + {generated} generated" if generated else ""
        target = f", {len(self.target_tokens)} decoder tokens" if self.target_tokens else ""
        n_layers = len(s.layers)
        kept = len(s.captured)
        layers = f"{n_layers} layers" if kept == n_layers else f"{kept} of {n_layers} layers"
        best = ""
        if "prev" in stats:
            slot, head = np.unravel_index(np.argmax(stats["prev"]), stats["prev"].shape)
            best = (
                f"; strongest previous-token head L{s.captured[slot]}H{head} "
                f"{stats['prev'][slot, head]:.2f}"
            )
        stacks = f" [{', '.join(self.stack_names)}]" if len(self.stack_names) > 1 else ""
        return (
            f"AttentionResult({self.label}: {self.n_prompt} tokens{gen}{target}{stacks}, "
            f"{layers} × {s.n_heads} heads ({s.n_kv_heads} KV){best})"
        )

    def stack_payload(self, name: str) -> dict[str, Any]:
        """The part of a stack's payload that differs between compared variants."""
        s = self.stack(name)
        return {
            "thumb": {
                "rows": int(s.thumbs.shape[-2]),
                "cols": int(s.thumbs.shape[-1]),
                "enc": "sqrt8",
                "data": encode.b64(encode.sqrt8(s.thumbs)),
            },
            "stats": {k: np.round(v, 4).tolist() for k, v in self.stats(name).items()},
        }

    def variant_payload(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "stacks": {name: self.stack_payload(name) for name in self.stack_names},
        }

    def lines(self, layer: int, k: int = LINES_K, stack: str | None = None) -> dict[str, Any]:
        """The strongest ``k`` keys of every query in every head of ``layer`` (head view)."""
        self.check(layer, None, stack)
        s = self.stack(stack)
        index, value = [], []
        for _, _, p in s.layer_rows(layer):
            i, v = encode.top_lines(p, k)
            index.append(i)
            value.append(v)
        index_all, value_all = np.concatenate(index, axis=1), np.concatenate(value, axis=1)
        return {
            "stack": s.name,
            "layer": layer,
            "k": int(index_all.shape[-1]),
            "index": encode.b64(np.ascontiguousarray(index_all)),
            "value": encode.b64(np.ascontiguousarray(value_all)),
        }

    def structure(self) -> list[dict[str, Any]]:
        """Each stack's shape for the views: title, token axes, every layer and its kind."""
        return [
            {
                "name": s.name,
                "title": s.title,
                "queries": s.queries,
                "keys": s.keys,
                "n_heads": s.n_heads,
                "n_kv_heads": s.n_kv_heads,
                "layers": [
                    {
                        "index": i.index,
                        "kind": i.kind,
                        "captured": i.captured,
                        "has_attention": i.has_attention,
                        "note": i.note,
                    }
                    for i in s.layers
                ],
            }
            for s in self.captured.stacks.values()
        ]

    def payload(self) -> dict[str, Any]:
        first = self.captured.main.name
        layer = self.initial_layer()
        return {
            "model": self.model,
            "family": self.family,
            "tokens": self.tokens,
            "target_tokens": self.target_tokens,
            "n_prompt": self.n_prompt,
            "stacks": self.structure(),
            "stack": first,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "n_kv_heads": self.captured.main.n_kv_heads,
            "layer": layer,
            "head": self.head,
            "precision": self.captured.precision,
            "a": self.variant_payload(),
            "lines": self.lines(layer),
            "compare": None,
            "link": list(self.link) if self.link is not None else None,
        }

    def answer(self, request: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
        """Serve the live view's on-demand requests (full heads, head-view lines, rows)."""
        return answer_request(self, None, request)

    def to_html(self) -> str:
        from llmlab.attention.static import render

        return render(self, None)


@dataclass
class StackDiff:
    """Per-head differences B − A of one stack over the layers both captured."""

    layers: list[int]
    change: np.ndarray  # (C, H) mean total variation per query row
    max_abs: np.ndarray  # (C, H) largest single weight difference
    thumbs: torch.Tensor  # (C, H, Tq, Tk) signed, max-|d| pooled


@dataclass(repr=False)
class AttentionComparison(Result):
    """The same tokens through two variants ``a`` and ``b``: per-head differences (b - a).

    ``change[slot, head]`` is the mean total-variation distance between the two heads' rows
    (0: identical, 1: disjoint) over the captured layers ``layers``, the ranking key of
    :meth:`ranking`. ``diffs`` holds the same per stack.
    """

    a: AttentionResult
    b: AttentionResult
    diffs: dict[str, StackDiff]

    @property
    def main(self) -> StackDiff:
        return self.diffs[self.a.captured.main.name]

    @property
    def change(self) -> np.ndarray:
        return self.main.change

    @property
    def max_abs(self) -> np.ndarray:
        return self.main.max_abs

    @property
    def diff_thumbs(self) -> torch.Tensor:
        return self.main.thumbs

    @property
    def layers(self) -> list[int]:
        return self.main.layers

    def ranking(self) -> pd.DataFrame:
        """Heads ordered by how much their attention changed, most first."""
        import pandas as pd

        many = len(self.diffs) > 1
        rows = [
            {
                **({"stack": name} if many else {}),
                "layer": layer,
                "head": head,
                "kv_head": self.a.kv_head(head, name),
                "change (mean TV)": float(d.change[slot, head]),
                "max |Δ|": float(d.max_abs[slot, head]),
            }
            for name, d in self.diffs.items()
            for slot, layer in enumerate(d.layers)
            for head in range(d.change.shape[1])
        ]
        frame = pd.DataFrame(rows).sort_values("change (mean TV)", ascending=False)
        return frame.reset_index(drop=True)

    def to_pandas(self) -> pd.DataFrame:
        return self.ranking()

    def summary(self) -> str:
        slot, head = np.unravel_index(np.argmax(self.change), self.change.shape)
        return (
            f"AttentionComparison({self.a.label} vs {self.b.label}: {self.a.n_tokens} tokens; "
            f"mean change {self.change.mean():.4f}, most changed L{self.layers[slot]}H{head} "
            f"{self.change[slot, head]:.4f})"
        )

    def payload(self) -> dict[str, Any]:
        data = self.a.payload()
        data["compare"] = {
            **self.b.variant_payload(),
            "diffs": {
                name: {
                    "rows": int(d.thumbs.shape[-2]),
                    "cols": int(d.thumbs.shape[-1]),
                    "enc": "signed8",
                    "data": encode.b64(encode.signed8(d.thumbs)),
                    "change": np.round(d.change, 5).tolist(),
                    "max_abs": np.round(d.max_abs, 5).tolist(),
                }
                for name, d in self.diffs.items()
            },
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

    ``{"kind": "head", stack, layer, head, which: a|b|diff}`` -> the full head (u16 or s16);
    ``{"kind": "lines", stack, layer, which}`` -> top-k lines of a layer;
    ``{"kind": "row", stack, layer, query, which}`` -> exact float32 weights of one query,
    all heads; ``{"kind": "links", stack, which}`` -> every head's weights (u16, short inputs);
    ``{"kind": "link", stack, query, key, which}`` -> each head's weight of one token pair.
    ``stack`` defaults to the first stack.
    """
    keys = ("id", "kind", "stack", "layer", "head", "which")
    reply: dict[str, Any] = {k: request.get(k) for k in keys}
    try:
        which = request.get("which") or "a"
        if which != "a" and b is None:
            raise LabError("this view has no second variant")
        result = b if which == "b" else a
        stack = request.get("stack") or a.captured.main.name
        layer = int(request["layer"])
        kind = request.get("kind")
        n_keys = len(a.tokens_of(a.stack(stack).keys))
        if kind == "head":
            head = int(request["head"])
            if which == "diff":
                d = b.weights(layer, head, stack) - a.weights(layer, head, stack)
                return reply | {"enc": "s16", "n": n_keys}, [encode.s16(d).tobytes()]
            data = encode.u16(result.weights(layer, head, stack))
            return reply | {"enc": "u16", "n": n_keys}, [data.tobytes()]
        if kind == "lines":
            return reply | {"lines": result.lines(layer, stack=stack)}, []
        if kind == "row":
            values = result.row(layer, int(request["query"]), stack).astype("<f4")
            return reply | {"query": int(request["query"])}, [values.tobytes()]
        if kind == "links":
            table = result.link_table(stack)
            if table is None:
                raise LabError("too many tokens for every head's weights at once: ask per pair")
            return reply | {"enc": "u16", "shape": list(table.shape)}, [table.tobytes()]
        if kind == "link":
            query, key = int(request["query"]), int(request["key"])
            values = result.link_weights(query, key, stack).astype("<f4")
            return reply | {"query": query, "key": key}, [values.tobytes()]
        raise LabError(f"unknown request {kind!r}")
    except (LabError, KeyError, ValueError, TypeError) as err:
        return reply | {"error": str(err)}, []
