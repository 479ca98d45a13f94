"""Per-layer reductions fed chunk by chunk of query rows: per-head statistics and max-pooled
thumbnails, so no layer's full weights need to exist at once."""

from __future__ import annotations

import math

import torch

#: Statistics per stack: cross-attention has no "previous token" or distance (its queries and
#: keys are different sequences).
SELF_STATS = ("entropy", "sink", "prev", "distance")
CROSS_STATS = ("entropy", "sink")


def block(n: int, size: int) -> int:
    """Rows (or columns) per thumbnail pixel for n tokens shrunk to at most ``size``."""
    return max(1, -(-n // size))


def cells(n: int, size: int) -> int:
    return -(-n // block(n, size))


class LayerReducer:
    """Accumulates one layer's statistics (H,) and thumbnail (H, Tq, Tk) from row chunks.

    Statistics average over query rows ``first``..nq-1: in a causal stack row 0 can only attend
    to itself, which would pull every head towards "sink" and "zero entropy".
    """

    def __init__(
        self,
        n_heads: int,
        nq: int,
        nk: int,
        thumb: int,
        *,
        causal: bool,
        cross: bool,
        device: torch.device | str = "cpu",
    ):
        self.nq, self.nk = nq, nk
        self.bq, self.bk = block(nq, thumb), block(nk, thumb)
        self.thumb = torch.zeros(n_heads, cells(nq, thumb), cells(nk, thumb), device=device)
        self.cross = cross
        self.first = 1 if causal and nq > 1 else 0
        self.names = CROSS_STATS if cross else SELF_STATS
        self.sums = {
            k: torch.zeros(n_heads, dtype=torch.float64, device=device) for k in self.names
        }
        self.key_pos = torch.arange(nk, dtype=torch.float32, device=device)

    @property
    def row_multiple(self) -> int:
        return self.bq

    def add(
        self,
        r0: int,
        p: torch.Tensor,
        entropy_nats: torch.Tensor,
        row_sums: torch.Tensor | None = None,
    ) -> None:
        """Weights ``p`` (H, r, stop) of query rows r0..r0+r-1 over keys 0..stop-1, each
        row's entropy in nats (H, r) and sum (H, r; computed here when not given)."""
        r, stop = p.shape[-2], p.shape[-1]
        lo = max(0, self.first - r0)  # rows of this chunk that count in the averages
        if lo < r:
            rows = p[:, lo:]
            self.sums["entropy"] += entropy_nats[:, lo:].sum(-1).double() / math.log(2)
            self.sums["sink"] += rows[..., 0].sum(-1).double()
            if not self.cross:
                q_pos = torch.arange(r0 + lo, r0 + r, dtype=torch.float32, device=p.device)
                # Rows sum to (about) 1, so the mean distance sum_j a_ij (i - j) is
                # i·sum_j a_ij - a_i·j: a matrix-vector product, no n² distance matrix.
                sums = rows.sum(-1) if row_sums is None else row_sums[:, lo:]
                dist = q_pos * sums - rows @ self.key_pos[:stop]
                self.sums["distance"] += dist.sum(-1).double()
        if not self.cross:
            lo_prev = max(1, r0) - r0
            if lo_prev < r:
                i = torch.arange(lo_prev, r, device=p.device)
                prev = p[:, i, (i + r0 - 1).clamp(max=stop - 1)]
                prev = torch.where(i + r0 - 1 < stop, prev, torch.zeros_like(prev))
                self.sums["prev"] += prev.sum(-1).double()
        self._pool(r0, p)

    def _pool(self, r0: int, p: torch.Tensor) -> None:
        # Max pooling (not average) keeps thin structure such as the previous-token diagonal
        # visible when 1,024 tokens are shrunk to 64 pixels.
        h, r, stop = p.shape
        bq, bk = self.bq, self.bk
        if bq == 1 and bk == 1:
            self.thumb[:, r0 : r0 + r, :stop] = p
            return
        tk = -(-stop // bk)
        tq = -(-r // bq)
        pad = (0, tk * bk - stop, 0, tq * bq - r)
        x = torch.nn.functional.pad(p, pad) if any(pad) else p
        pooled = x.reshape(h, tq, bq, tk, bk).amax(dim=(2, 4))
        row0 = r0 // bq  # chunks start on multiples of bq
        self.thumb[:, row0 : row0 + tq, :tk] = torch.maximum(
            self.thumb[:, row0 : row0 + tq, :tk], pooled
        )

    def stats(self) -> dict[str, torch.Tensor]:
        rows = max(1, self.nq - self.first)
        prev_rows = max(1, self.nq - 1)
        out = {}
        for k, v in self.sums.items():
            out[k] = (v / (prev_rows if k == "prev" else rows)).float().cpu()
        return out


def row_entropy_nats(p: torch.Tensor) -> torch.Tensor:
    """Entropy of every row of weights ``p`` (..., n), when only the weights are known."""
    return torch.special.entr(p).sum(-1)
