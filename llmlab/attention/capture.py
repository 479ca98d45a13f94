"""Capture attention weights from a model that normally runs with ``sdpa``.

transformers 5 refuses ``output_attentions=True`` under sdpa, and sdpa never materialises the
weights. So for the length of one forward pass we switch the model to the eager kernel (which
computes ``softmax(QKᵀ)`` explicitly, with the model's own RoPE, masks and GQA), read each
layer's weights with a forward hook on its attention module, and restore the original kernel
and remove every hook in ``finally`` -- also when the forward pass raises.

Each layer is reduced as soon as its hook fires (statistics, thumbnails, a float16 copy), so
the float32 weights of only one layer exist at a time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmlab.attention.encode import block_max, pooled_size
from llmlab.errors import LabError

if TYPE_CHECKING:
    import torch

    from llmlab.models.loaded import LoadedModel

#: Decoder attention modules as transformers names them: ``model.layers.7.self_attn``.
_ATTENTION_MODULE = re.compile(r"(?:^|\.)layers\.(\d+)\.self_attn$")
#: Above this many tokens the float16 store (layers × heads × n² × 2 bytes) gets too large.
MAX_TOKENS = 2048
#: Grid thumbnails are at most this many pixels a side (see encode.block_max).
THUMB = 64


@dataclass
class Captured:
    """One forward pass's attention, reduced.

    Shapes: L layers, H query heads, n tokens, T = min(n, THUMB).
    """

    weights: torch.Tensor  # (L, H, n, n) float16 on CPU (store_dtype): full resolution
    stats: dict[str, torch.Tensor]  # name -> (L, H) float32
    thumbs: torch.Tensor  # (L, H, T, T) float32, max-pooled weights


def attention_modules(model: Any, family: str) -> list[Any]:
    """The self-attention module of every decoder layer, in layer order (one adapter for all
    transformers families that name them ``layers.N.self_attn``)."""
    found: dict[int, Any] = {}
    for name, module in model.named_modules():
        match = _ATTENTION_MODULE.search(name)
        if match:
            found.setdefault(int(match.group(1)), module)
    n_layers = getattr(model.config.get_text_config(), "num_hidden_layers", None)
    if not found or (n_layers is not None and len(found) != n_layers):
        raise LabError(
            f"cannot capture attention of the {family!r} family: its layers have no standard "
            "self-attention modules (layers.N.self_attn) to read"
        )
    return [found[i] for i in sorted(found)]


def hook_count(model: Any) -> int:
    """How many forward hooks are attached anywhere in ``model`` (tests compare before/after)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@contextmanager
def eager_attention(model: Any, family: str) -> Iterator[None]:
    """Run the model with the eager attention kernel inside the block; restore it after."""
    original = model.config._attn_implementation
    if original != "eager":
        try:
            model.set_attn_implementation("eager")
        except (ValueError, ImportError, AttributeError) as err:
            raise LabError(
                f"cannot capture attention of the {family!r} family: it cannot switch to the "
                f"eager attention kernel ({str(err).splitlines()[0] if str(err) else err})"
            ) from err
    try:
        if model.config._attn_implementation != "eager":
            # set_attn_implementation only warns for models that cannot switch at run time.
            raise LabError(
                f"cannot capture attention of the {family!r} family: it does not support "
                "switching to the eager attention kernel at run time"
            )
        yield
    finally:
        if model.config._attn_implementation != original:
            model.set_attn_implementation(original)


def _row_entropy_bits(a: torch.Tensor, block: int = 128) -> torch.Tensor:
    """Entropy (bits) of every row of causal weights ``a`` (H, n, n).

    Row i only has i+1 possible keys, so each block of rows skips the all-zero columns to its
    right: about half the logarithms of a dense ``entr(a).sum(-1)``, the costliest step here.
    """
    import torch

    n = a.shape[-1]
    out = torch.empty(a.shape[:-1], dtype=a.dtype)
    for start in range(0, n, block):
        stop = min(start + block, n)
        out[:, start:stop] = torch.special.entr(a[:, start:stop, :stop]).sum(-1)
    return out / math.log(2)


def _reduce_layer(a: torch.Tensor, thumb: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-head statistics and a max-pooled thumbnail of one layer's weights ``a`` (H, n, n).

    Statistics average over query rows 1..n-1: row 0 can only attend to itself, which would
    pull every head towards "sink" and "zero entropy".
    """
    import torch

    n = a.shape[-1]
    first = 1 if n > 1 else 0
    rows = a[:, first:, :]
    query_pos = torch.arange(first, n, dtype=a.dtype)
    key_pos = torch.arange(n, dtype=a.dtype)
    # Rows sum to 1, so the mean distance sum_j a_ij (i - j) is i - a_i·j: a matrix-vector
    # product instead of an n² distance matrix.
    distance = query_pos - rows @ key_pos
    entropy = _row_entropy_bits(a)[:, first:]
    prev = (
        torch.diagonal(a, offset=-1, dim1=-2, dim2=-1)
        if n > 1
        else torch.zeros(a.shape[0], 1, dtype=a.dtype)
    )
    stats = {
        "entropy": entropy.mean(-1),
        "sink": rows[..., 0].mean(-1),
        "prev": prev.mean(-1),
        "distance": distance.mean(-1),
    }
    # Max pooling (not average) keeps thin structure such as the previous-token diagonal
    # visible when 1,024 tokens are shrunk to 64 pixels.
    thumbs = block_max(a, thumb)
    return stats, thumbs


def capture(
    lm: LoadedModel,
    input_ids: torch.Tensor,
    *,
    store_dtype: torch.dtype | None = None,
    thumb: int = THUMB,
) -> Captured:
    """Run ``lm`` once over ``input_ids`` (shape (1, n)) and capture every layer's attention."""
    import torch

    store_dtype = store_dtype or torch.float16
    n = int(input_ids.shape[1])
    if n > MAX_TOKENS:
        gib = 2 * _n_layers(lm) * _n_heads(lm) * n * n / 2**30
        raise LabError(
            f"{n} tokens is too long for an attention view (it would keep {gib:.1f} GiB of "
            f"weights); use at most {MAX_TOKENS} tokens"
        )
    modules = attention_modules(lm.model, lm.family)
    n_layers, n_heads = len(modules), _n_heads(lm)
    weights = torch.empty((n_layers, n_heads, n, n), dtype=store_dtype)
    t = pooled_size(n, thumb)
    thumbs = torch.empty((n_layers, n_heads, t, t), dtype=torch.float32)
    stats = {k: torch.empty((n_layers, n_heads)) for k in ("entropy", "sink", "prev", "distance")}
    seen: set[int] = set()

    def on_layer(index: int):
        def hook(module: Any, args: Any, output: Any) -> None:
            attn = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if attn is None:
                raise LabError(
                    f"cannot capture attention of the {lm.family!r} family: its attention "
                    "modules do not return weights under the eager kernel"
                )
            a = attn[0].detach().float().cpu()  # (H, n, n)
            layer_stats, layer_thumbs = _reduce_layer(a, thumb)
            for key, value in layer_stats.items():
                stats[key][index] = value
            thumbs[index] = layer_thumbs
            weights[index] = a.to(store_dtype)
            seen.add(index)

        return hook

    # Hook and switch the kernel only while the model is ours (a background sweep may time it).
    with lm.exclusive("attention capture"):
        handles = []
        try:
            with eager_attention(lm.model, lm.family):
                for i, module in enumerate(modules):
                    handles.append(module.register_forward_hook(on_layer(i)))
                with torch.inference_mode():
                    lm.model(
                        input_ids.to(lm.device),
                        attention_mask=torch.ones_like(input_ids).to(lm.device),
                        use_cache=False,
                    )
        finally:
            for handle in handles:
                handle.remove()
    if len(seen) != n_layers:
        raise LabError(
            f"cannot capture attention of the {lm.family!r} family: only {len(seen)} of "
            f"{n_layers} attention layers ran"
        )
    return Captured(weights=weights, stats=stats, thumbs=thumbs)


def _n_heads(lm: LoadedModel) -> int:
    return int(lm.config.get_text_config().num_attention_heads)


def _n_layers(lm: LoadedModel) -> int:
    return int(lm.config.get_text_config().num_hidden_layers)


def n_kv_heads(lm: LoadedModel) -> int:
    text = lm.config.get_text_config()
    return int(getattr(text, "num_key_value_heads", None) or text.num_attention_heads)
