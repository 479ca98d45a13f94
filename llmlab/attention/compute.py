"""Attention weights computed the way transformers' eager kernels compute them, in row chunks.

transformers has no function that returns weights for every family: each modeling file has
its own ``eager_attention_forward``. They share one recipe, which :class:`Recipe` follows:
``softmax(softcap(QKᵀ·scaling) + position_bias + mask [, sink])`` over query rows, with
grouped-query heads and dropout off. Computing it here, chunk by chunk of query rows, lets the
capture reduce each chunk at once (statistics, thumbnails) without ever holding a layer's full
weights, skip the keys a causal mask hides, and recompute any head or row later from the
layer's queries and keys (what the result keeps instead of the weights).

Shapes: H query heads, G = H / Hkv heads per key/value head, nq query rows, nk keys, d dims.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

#: Work per chunk: about this many float32 scores (heads × rows × keys, 32 MB) at a time. Fewer,
#: larger chunks measured faster here than small ones (per-operation overhead on a busy CPU)
#: at the cost of skipping less of the causal mask's hidden half.
CHUNK_ELEMENTS = 1 << 23


@dataclass
class Recipe:
    """Everything needed to compute one layer's weights (batch row 0)."""

    q: torch.Tensor  # (H, nq, d)
    k: torch.Tensor  # (Hkv, nk, d)
    scaling: float
    mask: torch.Tensor | None = None  # (nq, nk) additive (0 or a very negative number), shared
    bias: torch.Tensor | None = None  # (H or 1, nq, nk) additive position bias (T5), shared
    softcap: float | None = None  # logits -> tanh(logits / c) · c (Gemma 2)
    sinks: torch.Tensor | None = None  # (H,) one extra logit per head whose weight is dropped
    key_stop: torch.Tensor | None = None  # (nq,) int64: 1 + the last key row i may see
    mask_start: torch.Tensor | None = None  # (nq,) int64: the first key the mask changes

    @property
    def n_heads(self) -> int:
        return int(self.q.shape[0])

    @property
    def n_queries(self) -> int:
        return int(self.q.shape[1])

    @property
    def n_keys(self) -> int:
        return int(self.k.shape[1])

    @property
    def nbytes(self) -> int:
        return self.q.nelement() * self.q.element_size() + self.k.nelement() * self.k.element_size()

    def stop(self, r0: int, r1: int) -> int:
        """How many keys rows r0..r1-1 can see (all keys unless the mask hides a right tail)."""
        if self.key_stop is None:
            return self.n_keys
        return int(self.key_stop[r0:r1].max())

    def chunk_rows(self, multiple: int = 1) -> int:
        """Rows per chunk: equal chunks of at most about CHUNK_ELEMENTS scores, a multiple of
        ``multiple`` rows (thumbnail blocks)."""
        chunks = max(1, -(-self.n_heads * self.n_queries * self.n_keys // CHUNK_ELEMENTS))
        rows = -(-self.n_queries // chunks)
        return max(multiple, -(-rows // multiple) * multiple)

    def probs(
        self, r0: int, r1: int, heads: list[int] | None = None, stop: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Weights of query rows r0..r1-1 over keys 0..stop-1, float32 (h, r, stop), each
        row's entropy in nats (h, r) and each row's sum (h, r; below 1 only with sinks).

        The entropy comes from the logits s: sum_j p_j (lse - s_j), with one matrix-vector
        product instead of a logarithm of every weight. Operations run in place where they
        can: this loop is the capture's cost.
        """
        stop = self.stop(r0, r1) if stop is None else stop
        # Scaling the queries (r × d) instead of the scores (r × stop) saves a pass over the
        # scores; it changes them by float rounding only (~1e-7).
        q = self.q[:, r0:r1].float() * self.scaling
        k = self.k[:, :stop].float()
        n_kv, group = k.shape[0], self.n_heads // k.shape[0]
        if heads is None:
            # The query heads of one key/value head stacked as rows: one plain batched product
            # per KV head, no broadcast copies of the keys.
            s = torch.bmm(q.reshape(n_kv, group * (r1 - r0), -1), k.transpose(-1, -2))
            s = s.view(self.n_heads, r1 - r0, stop)
        else:
            kv = torch.tensor([h // group for h in heads], device=q.device)
            s = torch.matmul(q[heads], k[kv].transpose(-1, -2))
        if self.softcap:
            s.div_(self.softcap).tanh_().mul_(self.softcap)
        if self.bias is not None:
            b = self.bias[:, r0:r1, :stop].float()
            s.add_(b if b.shape[0] == 1 or heads is None else b[heads])
        if self.mask is not None:
            # Only the keys from the first one the mask changes in these rows: for a causal
            # mask that is the diagonal block, not the whole chunk.
            lo = int(self.mask_start[r0:r1].min()) if self.mask_start is not None else 0
            if lo < stop:
                s[..., lo:].add_(self.mask[r0:r1, lo:stop].float())
        m = s.amax(-1, keepdim=True)
        sink = None
        if self.sinks is not None:
            sink = self.sinks.float().view(-1, 1, 1)
            if heads is not None:
                sink = sink[heads]
            m = torch.maximum(m, sink)
        e = torch.sub(s, m).exp_()
        z_keys = e.sum(-1, keepdim=True)
        # sum_j e_j s_j without an (h, r, stop) temporary.
        es = torch.einsum("hrk,hrk->hr", e, s).view_as(z_keys)
        z = z_keys + torch.exp(sink - m) if sink is not None else z_keys
        p = e.div_(z)
        lse = m + torch.log(z)
        # Masked keys have e_j = 0 and a finite very negative s_j, so they add exactly zero.
        entropy = (lse * z_keys / z - es / z).squeeze(-1)
        return p, entropy, (z_keys / z).squeeze(-1)

    def output(self, p: torch.Tensor, v: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
        """Weights ``p`` (H, r, stop) times values ``v`` (Hkv, nk, dv) -> (H, r, dv)."""
        n_kv, group = v.shape[0], self.n_heads // v.shape[0]
        stop = p.shape[-1]
        out = torch.bmm(p.reshape(n_kv, group * (r1 - r0), stop).to(v.dtype), v[:, :stop])
        return out.view(self.n_heads, r1 - r0, -1)

    def head(self, head: int) -> torch.Tensor:
        """One head's full weights, (nq, nk) float32."""
        out = torch.zeros(self.n_queries, self.n_keys)
        for r0, r1 in spans(self.n_queries, self.chunk_rows()):
            p = self.probs(r0, r1, heads=[head])[0]
            out[r0:r1, : p.shape[-1]] = p[0]
        return out

    def row(self, query: int) -> torch.Tensor:
        """Every head's weights of one query row, (H, nk) float32."""
        p = self.probs(query, query + 1, stop=self.n_keys)[0]
        return p[:, 0]

    def chunks(
        self, multiple: int = 1, key_multiple: int = 1
    ) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(r0, r1, weights (H, r, stop), entropy nats (H, r), row sums (H, r)) over all query
        rows; ``stop`` is rounded up to a multiple of ``key_multiple`` (thumbnail blocks)."""
        for r0, r1 in spans(self.n_queries, self.chunk_rows(multiple)):
            stop = min(self.n_keys, -(-self.stop(r0, r1) // key_multiple) * key_multiple)
            yield r0, r1, *self.probs(r0, r1, stop=stop)


def spans(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(start + size, n)


def additive_mask(mask: torch.Tensor | None, nq: int, nk: int) -> torch.Tensor | None:
    """The (nq, nk) additive mask of batch row 0 (transformers' eager masks are additive
    floats; a boolean mask means True = may attend)."""
    if mask is None:
        return None
    m = mask[0, 0] if mask.dim() == 4 else mask[0] if mask.dim() == 3 else mask
    m = m[:nq, :nk]
    if m.dtype == torch.bool:
        return torch.zeros(m.shape).masked_fill(~m, torch.finfo(torch.float32).min)
    return m


def key_stop(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Per query row, 1 + the last key it may see; None when every row sees every key."""
    if mask is None:
        return None
    allowed = (mask > torch.finfo(mask.dtype).min / 2).to(torch.uint8)
    nk = mask.shape[-1]
    # The first allowed key from the right is the last one the row may see.
    stop = nk - allowed.flip(-1).argmax(-1)
    return None if bool((stop == nk).all()) else stop


def mask_start(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Per query row, the first key where the additive mask is not zero (nk if none)."""
    if mask is None:
        return None
    changed = (mask != 0).to(torch.uint8)
    first = changed.argmax(-1)
    return torch.where(changed.bool().any(-1), first, torch.full_like(first, mask.shape[-1]))


def recipe_of_call(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    mask: torch.Tensor | None,
    scaling: float | None,
    kwargs: dict[str, Any],
    shared: dict[int, Any],
) -> Recipe:
    """The recipe of one attention-interface call (query (b, H, nq, d), key (b, Hkv, nk, d)).

    ``shared`` caches what all layers receive as the same tensor (the mask, T5's position
    bias), so each is converted and kept once, not once per layer.
    """
    nq, nk = query.shape[-2], key.shape[-2]
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    m = stop = start = None
    if mask is not None:
        cached = shared.get(id(mask))
        if cached is None or cached[0] is not mask:
            converted = additive_mask(mask, nq, nk)
            cached = (mask, converted, key_stop(converted), mask_start(converted))
            shared[id(mask)] = cached
        m, stop, start = cached[1], cached[2], cached[3]
    bias = kwargs.get("position_bias")
    if bias is not None:
        cached = shared.get(id(bias))
        if cached is None or cached[0] is not bias:
            cached = (bias, bias[0, :, :nq, :nk])
            shared[id(bias)] = cached
        bias = cached[1]
    sinks = kwargs.get("s_aux")
    if sinks is None and isinstance(getattr(module, "sinks", None), torch.nn.Parameter):
        sinks = module.sinks
    softcap = kwargs.get("softcap")
    return Recipe(
        q=query[0].detach(),
        k=key[0].detach(),
        scaling=float(scaling),
        mask=m,
        bias=bias,
        softcap=float(softcap) if softcap else None,
        sinks=sinks.detach() if sinks is not None else None,
        key_stop=stop,
        mask_start=start,
    )
