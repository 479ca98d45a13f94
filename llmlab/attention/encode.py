"""Compact encodings of attention for the browser: 8-bit thumbnails, 16-bit full heads,
top-k line lists, and small PNGs for the static HTML.

Encodings (decoded by ``widgets/attention.js``, which mirrors these functions):

- ``sqrt8``: weight a in [0, 1] -> round(255·√a). The square root keeps weak attention
  visible (1/255² ≈ 1.5e-5 is the smallest non-zero step) and is also the colour scale.
- ``signed8``: difference d in [-1, 1] -> round(127.5 + 127.5·sign(d)·√|d|).
- ``u16``: weight a -> round(65535·a), for full-resolution heads fetched on demand.
- ``s16``: difference d -> round(32767·d).
"""

from __future__ import annotations

import base64
import struct
import zlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def b64(data: np.ndarray | bytes) -> str:
    raw = data.tobytes() if isinstance(data, np.ndarray) else data
    return base64.b64encode(raw).decode("ascii")


def sqrt8(a: torch.Tensor) -> np.ndarray:
    import torch

    return (a.float().clamp(0, 1).sqrt() * 255).round().to(torch.uint8).numpy()


def signed8(d: torch.Tensor) -> np.ndarray:
    import torch

    d = d.float().clamp(-1, 1)
    return (
        (127.5 + 127.5 * torch.sign(d) * d.abs().sqrt())
        .round()
        .clamp(0, 255)
        .to(torch.uint8)
        .numpy()
    )


def u16(a: torch.Tensor) -> np.ndarray:
    import torch

    return (a.float().clamp(0, 1) * 65535).round().to(torch.int32).numpy().astype("<u2")


def s16(d: torch.Tensor) -> np.ndarray:
    import torch

    return (d.float().clamp(-1, 1) * 32767).round().to(torch.int32).numpy().astype("<i2")


def pooled_size(n: int, size: int) -> int:
    """The side of :func:`block_max`'s output for an n × n input."""
    return n if n <= size else -(-n // -(-n // size))


def block_max(x: torch.Tensor, size: int) -> torch.Tensor:
    """Shrink (..., n, n) to at most (..., size, size) by the maximum of each square block.

    Blocks of equal width b = ceil(n / size) over a zero-padded matrix: a reshape and ``amax``
    read the weights once, about 3x faster here than ``adaptive_max_pool2d`` (and zeros never
    win a maximum of attention weights, which are >= 0).
    """
    import torch.nn.functional as F

    n = x.shape[-1]
    if n <= size:
        return x.clone()
    b = -(-n // size)
    cells = pooled_size(n, size)
    pad = cells * b - n
    if pad:
        x = F.pad(x, (0, pad, 0, pad))
    lead = x.shape[:-2]
    return x.reshape(*lead, cells, b, cells, b).amax(dim=(-3, -1))


def signed_max_pool(d: torch.Tensor, size: int) -> torch.Tensor:
    """Shrink differences (..., n, n) keeping the strongest change of either sign in each
    cell (plain max pooling would hide decreases)."""
    import torch

    if d.shape[-1] <= size:
        return d.clone()
    up = block_max(d, size)
    down = block_max(-d, size)
    return torch.where(up >= down, up, -down)


class RowPool:
    """Max pooling of an (H, nq, nk) matrix fed in chunks of rows, to at most ``size`` pixels
    a side (the same cells as :func:`block_max`). Chunks must start on multiples of
    ``row_multiple``; a chunk may hold fewer keys than nk (the rest count as zeros).
    With ``signed``, each cell keeps the strongest change of either sign."""

    def __init__(self, heads: int, nq: int, nk: int, size: int, *, signed: bool = False):
        import torch

        self.bq, self.bk = -(-nq // size) if nq > size else 1, -(-nk // size) if nk > size else 1
        shape = (heads, -(-nq // self.bq), -(-nk // self.bk))
        self.up = torch.zeros(shape)
        self.down = torch.zeros(shape) if signed else None

    @property
    def row_multiple(self) -> int:
        return self.bq

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        h, r, k = x.shape
        tq, tk = -(-r // self.bq), -(-k // self.bk)
        if self.bq > 1 or self.bk > 1:
            x = F.pad(x, (0, tk * self.bk - k, 0, tq * self.bq - r))
            x = x.reshape(h, tq, self.bq, tk, self.bk).amax(dim=(2, 4))
        return x

    def add(self, r0: int, x: torch.Tensor) -> None:
        import torch

        for target, part in ((self.up, x), (self.down, -x if self.down is not None else None)):
            if target is None:
                continue
            pooled = self._pool(part.float().cpu())
            row0 = r0 // self.bq
            tq, tk = pooled.shape[-2:]
            view = target[:, row0 : row0 + tq, :tk]
            view.copy_(torch.maximum(view, pooled))

    def result(self) -> torch.Tensor:
        import torch

        if self.down is None:
            return self.up
        return torch.where(self.up >= self.down, self.up, -self.down)


def top_lines(a: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k strongest keys of every query row of one layer ``a`` (H, n, n):
    key indices (H, n, k) as little-endian uint16 and weights as u16."""
    import torch

    k = min(k, a.shape[-1])
    values, index = torch.topk(a.float(), k, dim=-1)
    return index.to(torch.int32).numpy().astype("<u2"), u16(values)


# -- colour maps (the same ramps as in attention.js) ------------------------------------------
def _ramp(stops: list[tuple[float, tuple[int, int, int]]]) -> np.ndarray:
    x = np.linspace(0, 1, 256)
    pos = [p for p, _ in stops]
    return np.stack(
        [np.interp(x, pos, [c[i] for _, c in stops]) for i in range(3)], axis=-1
    ).astype(np.uint8)


#: Attention: white -> blue -> dark navy, indexed by the sqrt8 code.
BLUES = _ramp([(0, (255, 255, 255)), (0.5, (66, 133, 244)), (1, (8, 29, 88))])
#: Differences: blue (lower in B) -> white -> red (higher in B), indexed by the signed8 code.
DIVERGING = _ramp([(0, (33, 102, 172)), (0.5, (255, 255, 255)), (1, (178, 24, 43))])


def png(codes: np.ndarray, cmap: np.ndarray) -> bytes:
    """A PNG of a 2-D uint8 code image through a 256-colour map.

    Written with zlib rather than an imaging library: 64×64 thumbnails do not justify a
    dependency, and the format needs only three chunks.
    """
    rgb = cmap[codes]  # (h, w, 3)
    h, w = codes.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def png_data_uri(codes: np.ndarray, cmap: np.ndarray) -> str:
    return "data:image/png;base64," + b64(png(codes, cmap))
