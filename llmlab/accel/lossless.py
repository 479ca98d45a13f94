"""quant=lossless: store weights that already lie on a 4- or 8-bit block grid in those bits.

A model converted from a quantized GGUF (the default SmolLM2 ships with Q4_1 linear layers and a
Q8_0 tied embedding/head) holds float32 weights that are exactly ``d * q + m`` (Q4_1: q in 0..15,
d and m float16, blocks of 32 along the input dimension) or ``d * q`` (Q8_0: q in -127..127).
Storing ``q``, ``d`` and ``m`` instead loses nothing: every weight is rebuilt bit for bit. Each
layer is checked bit for bit before it is swapped; a layer that is not on a grid stays float32.

The multiply needs a kernel that takes float32 activations (torch's int4/int8 weight-only CPU
kernels are fast only with bfloat16 activations, which would change the output), hence the
small C++ kernel in ``lossless_kernel.cpp``, built once by ``torch.utils.cpp_extension`` and
cached in torch's extensions directory (keyed by the source). Only the order in which the
products are summed differs from ``x @ w.T`` (as between any two matmul kernels).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmlab.errors import LabError

if TYPE_CHECKING:
    import torch
    from torch import nn

BLOCK = 32
#: Above this many activation rows (a prefill), the call dequantizes the layer once and uses
#: torch's float32 matmul: there the work is compute-bound and the BLAS kernel wins
#: (benchmarks/bench_lossless.py measures the crossover: about 20 rows here, 1 thread).
DEQUANT_ROWS = 24
#: Rows of each layer the cheap availability check looks at.
SAMPLE_ROWS = 8

SOURCES = ("lossless_kernel.cpp", "lossless_layer.cpp")

_build_error: str | None = None


@functools.cache
def _kernels() -> Any:
    """The compiled extension (q4_linear, q8_linear); raises LabError in one line if it cannot
    be built (no compiler, a failed build)."""
    global _build_error
    import shutil

    if _build_error is not None:
        raise LabError(_build_error)
    if not (shutil.which("g++") or shutil.which("c++")):
        _build_error = "quant=lossless builds a small C++ kernel and needs g++ on PATH"
        raise LabError(_build_error)
    from torch.utils.cpp_extension import load_inline

    here = Path(__file__).parent
    # One unit: the fused decoder layer (lossless_layer.cpp) calls the grid kernels.
    source = "\n".join((here / name).read_text() for name in SOURCES)
    try:
        return load_inline(
            name="llmlab_lossless",
            cpp_sources=[source],
            functions=[
                "q4_linear",
                "q8_linear",
                "q4_dequant",
                "q8_dequant",
                "layer_attn_input",
                "layer_attn_output_mlp",
            ],
            extra_cflags=["-O3", "-march=native", "-fopenmp"],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as exc:  # a compiler error is many lines; keep the first meaningful one
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        _build_error = f"quant=lossless could not build its C++ kernel: {first[:200]}"
        raise LabError(_build_error) from None


def build_problem() -> str | None:
    """Why the kernel cannot be built here (None when it can, or has not been tried yet and a
    compiler is on PATH)."""
    import shutil

    if _build_error is not None:
        return _build_error
    if not (shutil.which("g++") or shutil.which("c++")):
        return "needs a C++ compiler (g++) on PATH to build its kernel"
    return None


# --- grid detection -------------------------------------------------------------------------


def _f16_candidates(value: torch.Tensor) -> list[torch.Tensor]:
    """float16 rounding of ``value`` and its two float16 neighbours, as float32."""
    import torch

    h = value.to(torch.float16)
    up = torch.nextafter(h, torch.full_like(h, float("inf")))
    down = torch.nextafter(h, torch.full_like(h, float("-inf")))
    return [t.float() for t in (h, up, down)]


def _codes(numerator: torch.Tensor, d: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """round(numerator / d) per block, clamped to [lo, hi]; 0 where a block's scale is 0."""
    import torch

    positive = (d > 0)[..., None]
    q = torch.round(numerator / torch.where(d > 0, d, torch.ones_like(d))[..., None])
    return torch.where(positive, q.clamp(lo, hi), torch.zeros_like(q))


def _first_fit(
    candidates: list[torch.Tensor], fit: Any
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per block, the first candidate scale ``d`` whose codes rebuild it bit for bit:
    ``(q, d)`` for every block, or None when some block fits none. ``fit(d)`` gives the codes
    and, per block, whether they rebuild it."""
    import torch

    best_q = best_d = ok = None
    for d in candidates:
        q, good = fit(d)
        if best_q is None:
            best_q, best_d, ok = q, d, good
        else:
            take = good & ~ok
            best_q = torch.where(take[..., None], q, best_q)
            best_d = torch.where(take, d, best_d)
            ok = ok | good
        if bool(ok.all()):
            return best_q, best_d
    return None


def _blocks(w: torch.Tensor) -> torch.Tensor | None:
    """``w`` [N, K] float32 as [N, K/32, 32] blocks, or None when it cannot be on a grid."""
    import torch

    if w.dtype != torch.float32 or w.dim() != 2 or w.shape[1] % BLOCK:
        return None
    return w.reshape(w.shape[0], w.shape[1] // BLOCK, BLOCK)


def q4_grid(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """``(q uint8 [N, K], d [N, K/32], m [N, K/32])`` with ``d * q + m == w`` bit for bit in
    float32 (d, m float16 values), or None when ``w`` is not on such a grid."""
    import torch

    if (wb := _blocks(w)) is None:
        return None
    lo, hi = wb.amin(-1), wb.amax(-1)
    if not torch.equal(lo.to(torch.float16).float(), lo):
        return None  # the offset m is a float16 value and is the block minimum (q = 0)

    def fit(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = _codes(wb - lo[..., None], d, 0, 15)
        return q, ((d[..., None] * q + lo[..., None]) == wb).all(-1)

    if (found := _first_fit(_f16_candidates((hi - lo) / 15), fit)) is None:
        return None
    q, d = found
    return q.to(torch.uint8).reshape(w.shape), d.contiguous(), lo.contiguous()


def q8_grid(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(q int8 [N, K], d [N, K/32])`` with ``d * q == w`` bit for bit, or None."""
    import torch

    if (wb := _blocks(w)) is None:
        return None

    def fit(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = _codes(wb, d, -127, 127)
        return q, ((d[..., None] * q) == wb).all(-1)

    if (found := _first_fit(_f16_candidates(wb.abs().amax(-1) / 127), fit)) is None:
        return None
    q, d = found
    return q.to(torch.int8).reshape(w.shape), d.contiguous()


def pack_q4(q: torch.Tensor) -> torch.Tensor:
    """uint8 ``q`` [N, K] (0..15) -> [N, K/2]: per block of 32, byte j holds q[j] (low nibble)
    and q[j + 16] (high nibble)."""
    n, k = q.shape
    qb = q.reshape(n, k // BLOCK, 2, BLOCK // 2)
    return (qb[:, :, 0] | (qb[:, :, 1] << 4)).reshape(n, k // 2).contiguous()


def unpack_q4(packed: torch.Tensor) -> torch.Tensor:
    import torch

    n, half = packed.shape
    pb = packed.reshape(n, half // (BLOCK // 2), BLOCK // 2)
    return torch.stack([pb & 0x0F, pb >> 4], dim=2).reshape(n, half * 2)


# --- modules ----------------------------------------------------------------------------------


@functools.cache
def _module_classes():
    # Defined inside a function so that importing llmlab.accel does not import torch; cached
    # so that isinstance checks see one class each.
    import torch

    class _GridLinear(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            shape = x.shape
            x2 = x.reshape(-1, shape[-1])
            if x2.dtype != torch.float32:
                raise LabError(f"quant=lossless runs float32 activations; got {x2.dtype}")
            # A prefill is compute-bound: torch's BLAS on the dequantized (identical) weights.
            y = x2 @ self.dequantized().T if x2.shape[0] > DEQUANT_ROWS else self.multiply(x2)
            y = y.reshape(*shape[:-1], self.out_features)
            return y if self.bias is None else y + self.bias

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}"

    class Q4Linear(_GridLinear):
        """A float32 ``nn.Linear`` whose weight is exactly a Q4_1 grid, stored as 4-bit codes
        plus a float16 scale and offset per block of 32 (float16 values: no loss)."""

        def __init__(self, linear: torch.nn.Linear, q, d, m):
            super().__init__()
            self.register_buffer("packed", pack_q4(q))
            self.register_buffer("d", d.to(torch.float16))
            self.register_buffer("m", m.to(torch.float16))
            self.bias = linear.bias
            self.out_features, self.in_features = linear.weight.shape

        def multiply(self, x):
            return _kernels().q4_linear(x, self.packed, self.d, self.m)

        def dequantized(self):
            return _kernels().q4_dequant(self.packed, self.d, self.m)

    class Q8Linear(_GridLinear):
        """A float32 ``nn.Linear`` whose weight is exactly a Q8_0 grid (int8 codes, a float16
        scale per block of 32)."""

        def __init__(self, linear: torch.nn.Linear, q, d):
            super().__init__()
            self.register_buffer("q", q.contiguous())
            self.register_buffer("d", d.to(torch.float16))
            self.bias = linear.bias
            self.out_features, self.in_features = linear.weight.shape

        def multiply(self, x):
            return _kernels().q8_linear(x, self.q, self.d)

        def dequantized(self):
            return _kernels().q8_dequant(self.q, self.d)

    return Q4Linear, Q8Linear


def grid_module(linear: nn.Module) -> nn.Module | None:
    """The packed replacement of ``linear`` if its weight lies on a Q4 or Q8 grid, else None."""
    import torch

    if type(linear) is not torch.nn.Linear:
        return None
    q4, q8 = _module_classes()
    w = linear.weight.detach()
    if (grid := q4_grid(w)) is not None:
        return q4(linear, *grid)
    if (grid := q8_grid(w)) is not None:
        return q8(linear, *grid)
    return None


def quantize_lossless(model: nn.Module) -> nn.Module:
    """Swap every ``nn.Linear`` of ``model`` (a private copy) whose weight lies on a grid for
    its packed form, in place; the output head too (a tied embedding keeps its float32 table,
    only the head module is replaced); then fuse the decoder layers that have the llama layout
    (:mod:`llmlab.accel.lossless_layers`). Raises LabError when no layer is on a grid."""
    import torch

    _kernels()  # one line, not a traceback, when the kernel cannot be built
    swapped = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear) and (new := grid_module(child)) is not None:
                setattr(parent, child_name, new)
                swapped += 1
    if not swapped:
        raise LabError(NOT_ON_GRID.format(name=type(model).__name__))
    from llmlab.accel.lossless_layers import fuse_decoder_layers

    fuse_decoder_layers(model)
    return model


NOT_ON_GRID = (
    "no weight of {name} lies on a 4- or 8-bit block grid (it was not shipped quantized): "
    "nothing to store losslessly; quant=int4 approximates"
)


def any_on_grid(model: nn.Module) -> bool:
    """Cheap check: does the first rows' block of some linear layer lie on a grid?"""
    import torch

    with torch.no_grad():
        for mod in model.modules():
            if type(mod) is torch.nn.Linear and mod.weight.dtype == torch.float32:
                w = mod.weight.detach()[:SAMPLE_ROWS]
                if q4_grid(w) is not None or q8_grid(w) is not None:
                    return True
    return False
