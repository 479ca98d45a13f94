"""What a capture or a sweep will hold, estimated before it runs, and a refusal over budget.

Captures keep per-layer tensors whose size grows with layers × heads × tokens² (attention) or
layers × tokens × vocabulary (lens); on a big model or a long text that is more than the machine
has, and dying of out-of-memory halfway loses the session's state. Each estimator below counts
the bytes the capture code allocates (its stores plus the largest per-layer transient), and
:func:`guard` refuses in one line with the estimate and what to change.

The budget is a share of what is free now on the model's device (free RAM on CPU and MPS, free
card memory on CUDA); ``LLMLAB_MEMORY_BUDGET=4GB`` or :func:`set_budget` fixes it instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from llmlab.devices import format_bytes, free_memory_bytes, parse_size
from llmlab.errors import LabError
from llmlab.models.facts import config_facts, kv_cache_bytes

#: Share of the free memory a capture may take: the rest is for the forward pass's own
#: activations, the notebook and whatever else runs on the machine.
FREE_SHARE = 0.8
BUDGET_ENV = "LLMLAB_MEMORY_BUDGET"

_budget_override: int | None = None


@dataclass(frozen=True)
class Estimate:
    """Bytes an operation will hold, how they were counted, and what would make it smaller."""

    what: str  # "attention capture"
    bytes: int
    breakdown: str  # "30 layers × 9 heads × 1,024² tokens × 2 B"
    advice: str  # "capture fewer layers (--layers 10-20) or a shorter text"

    def __str__(self) -> str:
        return f"{self.what}: ~{format_bytes(self.bytes)} ({self.breakdown})"


def set_budget(size: int | str | None) -> None:
    """Fix the budget (bytes or ``"4GB"``); ``None`` returns to a share of free memory."""
    global _budget_override
    _budget_override = parse_size(size) if isinstance(size, str) else size


def budget(device: str = "cpu") -> tuple[int, str]:
    """(bytes, where the figure comes from)."""
    if _budget_override is not None:
        return _budget_override, "set by llmlab.memory.set_budget"
    if text := os.environ.get(BUDGET_ENV):
        return parse_size(text), f"${BUDGET_ENV}"
    free = free_memory_bytes(device)
    where = "free card memory" if device.startswith("cuda") else "free RAM"
    return int(free * FREE_SHARE), f"{FREE_SHARE:.0%} of {format_bytes(free)} {where}"


def guard(estimate: Estimate, device: str = "cpu") -> Estimate:
    """Refuse (one-line :class:`LabError`) when ``estimate`` exceeds the budget; else return it."""
    limit, source = budget(device)
    if estimate.bytes > limit:
        raise LabError(
            f"{estimate.what} would hold ~{format_bytes(estimate.bytes)} "
            f"({estimate.breakdown}) but the budget is {format_bytes(limit)} ({source}); "
            f"{estimate.advice}"
        )
    return estimate


# -- estimators --------------------------------------------------------------------------------


def _n(x: int) -> str:
    return f"{x:,}"


def attention_capture(
    config: Any,
    tokens: int,
    layers: int | None = None,
    *,
    store_bytes: int = 4,
    thumb: int = 64,
    compute_bytes: int = 4,
) -> Estimate:
    """An attention capture (``llmlab.attention.capture``): each captured layer keeps its
    queries and keys (layers × (heads + KV heads) × n × head size in ``store_bytes``, the
    model's float32 by default), float32 grid thumbnails and the mask once (n² floats); the
    transient is one chunk of scores and weights (about 2 × 2²⁰ floats) or, for a short input,
    one layer's."""
    facts = config_facts(config)
    layers = facts.layers if layers is None else layers
    heads, kv, head_dim = facts.heads, facts.kv_heads, facts.head_dim
    t = min(tokens, thumb)
    store = layers * (heads + kv) * tokens * head_dim * store_bytes
    thumbs = layers * heads * t * t * 4
    mask = tokens * tokens * 4
    transient = 2 * min(heads * tokens * tokens, 1 << 20) * compute_bytes
    return Estimate(
        "attention capture",
        store + thumbs + mask + transient,
        f"{layers} layers × {heads + kv} query/key heads × {_n(tokens)} tokens × {head_dim} × "
        f"{store_bytes} B, plus the mask ({_n(tokens)}² floats) and one chunk of scores",
        "capture fewer layers (--layers 10-20) or a shorter text",
    )


def lens_capture(
    config: Any,
    tokens: int,
    layers: int | None = None,
    *,
    top_k: int = 5,
    chunk: int = 256,
    hidden_bytes: int = 4,
) -> Estimate:
    """A logit lens (``llmlab.lens``): every layer's residual stream plus the embeddings
    ((layers + 1) × n × hidden in ``hidden_bytes``), the model's own float32 logits (n ×
    vocabulary), the ``top_k`` cells kept per row and position, and the transient of reading
    ``chunk`` positions at a time through the head (two float32 log-probability blocks)."""
    facts = config_facts(config)
    layers = facts.layers if layers is None else layers
    vocab, hidden = facts.vocab, facts.hidden
    rows = layers + 1
    residual = rows * tokens * hidden * hidden_bytes
    logits = tokens * vocab * 4
    kept = rows * tokens * (top_k * 12 + 16)
    transient = 2 * min(tokens, chunk) * vocab * 4
    return Estimate(
        "lens capture",
        residual + logits + kept + transient,
        f"{rows} rows × {_n(tokens)} tokens × {hidden} wide residuals, plus {_n(tokens)} × "
        f"{_n(vocab)} logits",
        "use a shorter text",
    )


def moe_capture(
    config: Any, tokens: int, layers: int | None = None, *, keep_router_logits: bool = False
) -> Estimate:
    """A MoE routing capture: per MoE layer and token the chosen experts as recorded (int64
    ids + float32 weights) and as kept (int16 + float32), and, when a view keeps them, the
    router's full score vector (float32, one per expert)."""
    facts = config_facts(config)
    experts = facts.experts or 1
    top_k = facts.experts_per_token or 1
    layers = facts.layers if layers is None else layers
    per_token = top_k * (8 + 4 + 2 + 4) + (experts * 4 if keep_router_logits else 0)
    return Estimate(
        "MoE routing capture",
        layers * tokens * per_token,
        f"{layers} MoE layers × {_n(tokens)} tokens × ({top_k} choices"
        + (f" + {experts} router scores)" if keep_router_logits else ")"),
        "capture fewer layers or fewer/shorter inputs",
    )


def kv_cache(config: Any, tokens: int, bytes_per_value: int = 4, batch: int = 1) -> int:
    """Bytes of a full K and V cache for ``tokens`` positions."""
    return batch * kv_cache_bytes(config, tokens, bytes_per_value)


def generation(
    config: Any,
    tokens: int,
    new_tokens: int,
    batch: int,
    *,
    bytes_per_value: int = 4,
    keep_logits: bool = False,
) -> Estimate:
    """Sampling ``batch`` sequences at once (``--best-of``, ``--num-return-sequences``): a KV
    cache per sequence for ``tokens`` positions, and the float32 logits of every step for every
    sequence where candidates are scored (``keep_logits``), else one step's."""
    try:
        kv = kv_cache(config, tokens, bytes_per_value, batch)
    except (AttributeError, TypeError, ZeroDivisionError):  # no attention KV (Mamba, RWKV)
        kv = 0
    vocab = config_facts(config).vocab or 0
    steps = new_tokens if keep_logits else 1
    kept = f" + {_n(batch)} × {_n(steps)} steps × {_n(vocab)} logits" if keep_logits else ""
    return Estimate(
        "generation",
        kv + batch * steps * vocab * 4,
        f"{_n(batch)} sequences × {_n(tokens)} tokens of KV cache{kept}",
        "sample fewer candidates (--best-of, --num-return-sequences) or fewer new tokens",
    )


#: Weight bytes of a load-time variant relative to float32 weights (see llmlab.accel.quant).
WEIGHT_SHARE = {"int8": 0.45, "int4": 0.2, "bnb8": 0.3, "bnb4": 0.2, "bf16": 0.5, "fp16": 0.5}


def sweep(
    weight_bytes: int,
    config: Any,
    load_variants: list[str],
    tokens: int,
    *,
    kept_copies: int = 2,
    bytes_per_value: int = 4,
) -> Estimate:
    """A tradeoff sweep: the model, up to ``kept_copies`` changed copies alive at once (each
    load-time variant such as ``quant=int4`` is a private copy; see llmlab.accel.variant), and a
    KV cache for ``tokens`` positions. A copy starts as a full-precision deep copy and is
    quantized in place, so one full copy is held while the next variant is made."""
    shares = sorted((_weight_share(v) for v in load_variants), reverse=True)[:kept_copies]
    copies = int(sum(shares) * weight_bytes) + (weight_bytes if shares else 0)
    kv = kv_cache(config, tokens, bytes_per_value)
    return Estimate(
        "tradeoff sweep",
        copies + kv,
        f"{len(shares)} changed weight copies of {format_bytes(weight_bytes)} kept, one being "
        f"made, + KV cache for {_n(tokens)} tokens",
        "sweep fewer load-time configurations (quant=, dtype=) or fewer new tokens",
    )


def _weight_share(label: str) -> float:
    """The largest share over the parts of a load label (``quant=int8,dtype=bf16``)."""
    values = [part.split("=", 1)[-1] for part in label.split(",")]
    return max((WEIGHT_SHARE.get(v, 1.0) for v in values), default=1.0)


# -- a model before it is built ------------------------------------------------------------------

#: More layers than any released model has by two orders of magnitude: building that many
#: modules takes minutes even when each is tiny, so such a config is refused outright.
MAX_LAYERS = 10_000


def weights_from_config(config: Any, bytes_per_param: int = 4) -> Estimate:
    """The weights a config asks for, counted from its sizes before anything is allocated:
    embeddings, and per layer the attention projections and the MLP (every expert's, for a
    MoE). A lower bound (norms, biases, routers, vision towers are left out): a refusal on it
    is certain, and sizes the config does not state count as zero."""
    from llmlab.models.facts import text_config

    facts = config_facts(config)
    text = text_config(config)
    hidden, layers, vocab = facts.hidden or 0, facts.layers or 0, facts.vocab or 0
    heads = facts.heads or 1
    kv, head_dim = facts.kv_heads or heads, facts.head_dim or hidden // heads
    ffn = _whole(text, "intermediate_size", "n_inner", "ffn_dim", "d_ff") or 4 * hidden
    if facts.experts:
        ffn = facts.experts * (_whole(text, "moe_intermediate_size", "expert_size") or ffn)
    attention = hidden * head_dim * (2 * heads + 2 * kv)  # q and o, k and v
    per_layer = attention + 2 * hidden * ffn  # an up and a down projection at least
    tied = bool(getattr(config, "tie_word_embeddings", True))
    params = layers * per_layer + vocab * hidden * (1 if tied else 2)
    return Estimate(
        "the model's weights",
        params * bytes_per_param,
        f"{_n(layers)} layers × {_n(per_layer)} parameters + {_n(vocab)} × {_n(hidden)} "
        f"embeddings, {bytes_per_param} B each",
        "check the folder's config.json (its sizes decide what is allocated), or load on a "
        "device with more memory (--device, --device-map auto with --max-memory ...,disk)",
    )


def _whole(config: Any, *names: str) -> int:
    """The first of ``names`` the config sets to a positive whole number, else 0."""
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def guard_load(config: Any, bytes_per_param: int, device: str) -> Estimate:
    """Refuse, in one line and before anything is allocated, a config whose weights cannot
    fit the free memory of ``device`` (or ``LLMLAB_MEMORY_BUDGET``), or whose layer count no
    model has."""
    layers = config_facts(config).layers or 0
    if layers > MAX_LAYERS:
        raise LabError(
            f"the config asks for {_n(layers)} layers; llmlab refuses more than "
            f"{_n(MAX_LAYERS)} (released models have at most a few hundred): check config.json"
        )
    estimate = weights_from_config(config, bytes_per_param)
    if _budget_override is not None or os.environ.get(BUDGET_ENV):
        limit, source = budget(device)
    else:  # the whole of what is free: a load does not share it with a capture
        limit = free_memory_bytes(device)
        source = f"free {'card memory' if device.startswith('cuda') else 'RAM'}"
    if estimate.bytes > limit:
        raise LabError(
            f"loading needs at least ~{format_bytes(estimate.bytes)} for {estimate.what} "
            f"({estimate.breakdown}) but {format_bytes(limit)} is free ({source}); "
            f"{estimate.advice}"
        )
    return estimate
