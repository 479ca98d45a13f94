"""Scans: many interventions on one input, batched so the batch dimension carries the variants.

- :func:`head_importance` ablates every head in turn and measures the change in the answer
  token's log-probability (or the KL divergence of the next-token distribution);
- :func:`patching` runs a corrupted prompt with one piece of the clean run's activations put
  back — the residual stream at each (layer, position), each head's output, each MoE layer's
  output at each position — and measures how much of the clean logit difference returns.

Why it is fast, and exact (the same numbers as one forward pass per variant, up to float
rounding):

- the batch grows with depth: a variant is the unedited input until its edit starts, so a pass
  starts with one row and each variant joins as a copy of that reference row at its own layer
  (:class:`llmlab.interventions.edits.Edits` ``grow``); no row computes the layers before its
  edit, and one pass can carry variants of every layer;
- patching at position ``p`` changes nothing before ``p``: the residual-stream and MoE passes
  run only the tokens from ``p`` on top of the corrupted run's keys and values, one pass per
  position (:mod:`llmlab.interventions.prefix`; families whose cache is not a plain per-layer
  KV cache run the full sequence). Head-output patching and head ablation change every
  position, so they use the growing batch only;
- only the last position's logits are computed.

``method="loop"`` runs the plain alternative (one full forward pass per variant) for comparison
and checks. ``ScanTiming.work`` says how much of the loop's layer × token work a scan did.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from llmlab import memory
from llmlab.errors import LabError
from llmlab.interventions import prefix as prefixes
from llmlab.interventions.edits import Edits, Recording, RowSet, applied, forward
from llmlab.interventions.prefix import Prefix
from llmlab.interventions.result import HeadImportance, PatchingResult, ScanTiming
from llmlab.interventions.sites import ModelSites, sites_of
from llmlab.interventions.spec import require_weights
from llmlab.tokens import token_texts

if TYPE_CHECKING:
    from llmlab.models.loaded import LoadedModel

#: Rows (variants) per forward pass at most; the memory budget may allow fewer.
MAX_ROWS = 64
METRICS = ("logprob", "kl")
METHODS = ("batched", "loop")
KINDS = ("resid", "heads", "moe")


# -- inputs ------------------------------------------------------------------------------------
def encode(lm: LoadedModel, text: str) -> torch.Tensor:
    from llmlab.generation.engine import encode_prompt

    return encode_prompt(lm, text, raw=True)


def single_token(lm: LoadedModel, text: str, what: str = "answer") -> int:
    """The id of ``text`` when it is one token; else one line saying how it tokenises."""
    if not isinstance(text, str) or not text:
        raise LabError(f"the {what} is empty: give one token such as ' Paris'")
    ids = lm.tokenizer(text, add_special_tokens=False).input_ids
    if len(ids) == 1:
        return int(ids[0])
    pieces = " + ".join(repr(t) for t in token_texts(lm.tokenizer, ids))
    hint = _one_token_hint(lm, text, ids)
    raise LabError(f"the {what} {text!r} is {len(ids)} tokens ({pieces}); {hint}")


def _one_token_hint(lm: LoadedModel, text: str, ids: list[int]) -> str:
    """What single token the user may have meant."""
    for other, how in ((" " + text, "with a leading space"), (text.strip(), "without spaces")):
        if (
            other != text
            and other.strip()
            and len(lm.tokenizer(other, add_special_tokens=False).input_ids) == 1
        ):
            return f"give one token: {how} {other!r} is one"
    first = token_texts(lm.tokenizer, ids[:1])[0] if ids else ""
    return f"give one token, e.g. its first, {first!r}"


# -- batching -----------------------------------------------------------------------------------
def row_bytes(lm: LoadedModel, n_tokens: int) -> int:
    """Bytes one variant (one batch row) of ``n_tokens`` holds during a pass, estimated:
    live activations of one layer (hidden states, MLP, attention weights, the layer's keys
    and values with a reused prefix in front) plus its last-position logits, twice for the
    copies a pass keeps alive at once. A pass peaks at its deepest layer, where all its rows
    are alive (the batch grows with depth), so rows × this bounds it."""
    text = lm.config.get_text_config()
    width = int(getattr(text, "hidden_size", 0) or 1024)
    inner = int(getattr(text, "intermediate_size", 0) or 4 * width)
    heads = int(getattr(text, "num_attention_heads", 0) or 8)
    kv = int(getattr(text, "num_key_value_heads", 0) or heads) * (width // heads)
    vocab = int(getattr(text, "vocab_size", 0) or 32000)
    item = lm.model.dtype.itemsize
    return (n_tokens * (8 * width + 3 * inner + heads * n_tokens + 2 * kv) + vocab) * item * 2


def rows_per_pass(lm: LoadedModel, n_tokens: int, wanted: int) -> int:
    """How many variants one forward pass may carry (its rows at the deepest layer):
    ``wanted``, fewer when the memory budget says so (the scan is split into more passes);
    refused in one line when even one row would not fit."""
    per_row = row_bytes(lm, n_tokens)
    limit, _ = memory.budget(lm.device)
    if per_row > limit:
        memory.guard(
            memory.Estimate(
                "intervention scan",
                per_row,
                f"1 variant × {n_tokens} tokens",
                "use a shorter text or raise the budget (llmlab.memory.set_budget)",
            ),
            lm.device,
        )
    return max(1, min(wanted, limit // per_row))


@dataclass
class _Pass:
    """One forward pass: its variants, one per row in row order, and the tokens before
    ``offset`` that come from the corrupted run's prefix instead of being run."""

    keys: list[Any]
    offset: int = 0


#: Builds a pass's edits: (variants in row order, offset of its first token) -> Edits.
Build = Callable[[list[Any], int], Edits]


def _plan(keys: list[Any], rows: int, position: Callable[[Any], int] | None) -> list[_Pass]:
    """Passes of at most ``rows`` variants. ``keys`` come ordered by the layer their edit
    starts at; in each pass the last-starting variant is row 0, the reference the others
    copy when they join (Edits.grow). With ``position`` (patching with a reusable prefix)
    a pass holds one position's variants and runs from that position."""
    groups: dict[int, list[Any]] = {}
    for key in keys:
        groups.setdefault(position(key) if position else 0, []).append(key)
    passes = []
    for offset, group in sorted(groups.items()):
        for i in range(0, len(group), rows):
            chunk = group[i : i + rows]
            passes.append(_Pass([chunk[-1], *chunk[:-1]], offset))
    return passes


def _run(
    lm: LoadedModel,
    sites: ModelSites,
    ids: torch.Tensor,
    keys: list[Any],
    build: Build,
    *,
    method: str,
    max_rows: int | None,
    progress: Callable[[int, int], None] | None = None,
    prefix: Prefix | None = None,
    position: Callable[[Any], int] | None = None,
) -> tuple[dict[Any, torch.Tensor], ScanTiming]:
    """Logits at the last position (float32, (vocab,)) of every variant in ``keys``.

    ``prefix`` and ``position``: the corrupted run's keys and values, and the position each
    variant patches (nothing before it changes), for passes that run only the tokens after
    (llmlab.interventions.prefix)."""
    if method not in METHODS:
        raise LabError(f"method {method!r}: choose {' or '.join(METHODS)}")
    start = time.perf_counter()
    out: dict[Any, torch.Tensor] = {}
    if method == "loop":
        passes, prefix = [_Pass([k]) for k in keys], None
    else:
        rows = rows_per_pass(lm, int(ids.shape[1]), max_rows or MAX_ROWS)
        passes = _plan(keys, rows, position if prefix is not None else None)
    work = 0
    for i, one in enumerate(passes):
        logits, layer_tokens = _pass(lm, sites, ids, one, build, method == "batched", prefix)
        work += layer_tokens
        if logits.shape[0] != len(one.keys):
            raise LabError("the batch did not grow: this family's layers ignore the hook")
        for key, row in zip(one.keys, logits, strict=True):
            out[key] = row
        if progress is not None:
            progress(i + 1, len(passes))
    full = len(keys) * sites.n_layers * int(ids.shape[1])
    timing = ScanTiming(
        method=method,
        variants=len(keys),
        passes=len(passes),
        rows_per_pass=max((len(p.keys) for p in passes), default=0),
        seconds=time.perf_counter() - start,
        work=work / full if full else 1.0,
        prefix_reused=prefix is not None,
    )
    return out, timing


def _pass(
    lm: LoadedModel,
    sites: ModelSites,
    ids: torch.Tensor,
    one: _Pass,
    build: Build,
    batched: bool,
    prefix: Prefix | None,
) -> tuple[torch.Tensor, int]:
    """Last-position logits of one pass (one row per variant, in row order) and the
    layer × token rows it computed."""
    n, layers = len(one.keys), sites.n_layers
    if not batched:
        with applied(sites, build(one.keys, 0)):
            logits = forward(lm, ids, last_only=False)[:, -1]
        return logits, n * layers * int(ids.shape[1])
    ids = ids[:, one.offset :]
    tokens = int(ids.shape[1])
    if sites.can_expand:
        edits = build(one.keys, one.offset)
        edits.grow = True
        try:
            with applied(sites, edits):
                logits = forward(lm, ids, cache=prefix.cache(one.offset) if prefix else None)
            return logits[:, -1], tokens * sum(edits.rows_in(i) for i in range(layers))
        except RuntimeError:
            if n == 1:
                raise
            # Per-row tensors built before the first layer (Bloom's ALiBi) cannot meet a
            # batch that grows inside the model: give every row its own copy of the input.
            sites.can_expand = False
    edits = build(one.keys, one.offset)
    with applied(sites, edits):
        cache = prefix.cache(one.offset) if prefix else None
        logits = forward(lm, ids.expand(n, -1), cache=cache)
    return logits[:, -1], n * layers * tokens


def _record(
    lm: LoadedModel, sites: ModelSites, ids: torch.Tensor
) -> tuple[Recording, torch.Tensor]:
    record = Recording()
    with applied(sites, Edits(), record=record):
        logits = forward(lm, ids)[:, -1]
    return record, logits[0]


def _heads_wanted(sites: ModelSites, layers: Sequence[int] | None) -> list[tuple[int, int]]:
    if sites.attention_note:
        raise LabError(sites.attention_note)
    chosen = sites.head_layers if layers is None else list(layers)
    for layer in chosen:
        sites.check_head(layer, 0)
    return [(layer, h) for layer in chosen for h in range(sites.n_heads)]


# -- head importance -----------------------------------------------------------------------------
def head_importance(
    lm: LoadedModel,
    text: str,
    *,
    answer: str | None = None,
    metric: str | None = None,
    mode: str = "zero",
    layers: Sequence[int] | None = None,
    method: str = "batched",
    max_rows: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> HeadImportance:
    """Ablate every head (of ``layers``) in turn; per head, the change in ``answer``'s
    log-probability after ``text`` (``metric="logprob"``, the default with an answer) or the
    KL divergence of the next-token distribution from the unablated one (``"kl"``).

    ``mode``: "zero" sets the head's output to 0, "mean" to its mean over the text's tokens.
    """
    require_weights(lm)
    metric = metric or ("logprob" if answer is not None else "kl")
    if metric not in METRICS:
        raise LabError(f"metric {metric!r}: choose {' or '.join(METRICS)}")
    if metric == "logprob" and answer is None:
        raise LabError("metric logprob needs an answer token (answer=' Paris')")
    if mode not in ("zero", "mean"):
        raise LabError(f"ablation mode {mode!r}: choose zero or mean")
    sites = sites_of(lm)
    keys = _heads_wanted(sites, layers)
    ids = encode(lm, text)
    answer_id = single_token(lm, answer) if answer is not None else None
    with lm.exclusive("head importance scan"):
        record, base = _record(lm, sites, ids)
        means = {
            layer: heads[:1].mean(dim=1, keepdim=True) for layer, heads in record.heads.items()
        }
        del record

        def build(chunk: list[tuple[int, int]], offset: int) -> Edits:
            n = len(chunk)
            edits = Edits(batch=n)
            for row, (layer, head) in enumerate(chunk):
                keep = edits.head_keep.setdefault(layer, torch.ones(n, sites.n_heads))
                keep[row, head] = 0.0
                if mode == "mean":
                    edits.head_fill[layer] = means[layer]
            return edits

        logits, timing = _run(
            lm, sites, ids, keys, build, method=method, max_rows=max_rows, progress=progress
        )
    base_lp = torch.log_softmax(base, -1)
    effects = np.full((sites.n_layers, sites.n_heads), np.nan, dtype=np.float64)
    for (layer, head), row in logits.items():
        lp = torch.log_softmax(row, -1)
        if metric == "logprob":
            value = float(lp[answer_id] - base_lp[answer_id])
        else:
            value = float((base_lp.exp() * (base_lp - lp)).sum())
        effects[layer, head] = value
    top = int(base.argmax())
    return HeadImportance(
        model=lm.name,
        text=text,
        tokens=token_texts(lm.tokenizer, ids[0].tolist()),
        answer_text=answer,
        answer_logprob=float(base_lp[answer_id]) if answer_id is not None else None,
        predicted=token_texts(lm.tokenizer, [top])[0],
        metric=metric,
        mode=mode,
        effects=effects,
        kinds=list(sites.kinds),
        n_kv_heads=_kv_heads(lm, sites.n_heads),
        timing=timing,
    )


def _kv_heads(lm: LoadedModel, n_heads: int) -> int:
    text = lm.config.get_text_config()
    kv = getattr(text, "num_key_value_heads", None) or n_heads
    return int(kv) if n_heads % int(kv) == 0 else n_heads


# -- activation patching -------------------------------------------------------------------------
def patching(
    lm: LoadedModel,
    clean: str,
    corrupted: str,
    answer: str,
    wrong: str,
    *,
    kinds: Sequence[str] = KINDS,
    method: str = "batched",
    max_rows: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PatchingResult:
    """Run ``corrupted`` with pieces of the ``clean`` run put back; per piece, the restored
    logit difference ``logit(answer) − logit(wrong)`` normalised to 0 (corrupted) … 1 (clean).

    ``kinds``: "resid" (each layer's output at each position), "heads" (each head's output
    at every position), "moe" (each MoE layer's output at each position; MoE models only).
    """
    require_weights(lm)
    kinds = list(dict.fromkeys(kinds))
    for kind in kinds:
        if kind not in KINDS:
            raise LabError(f"patch kind {kind!r}: choose from {', '.join(KINDS)}")
    sites = sites_of(lm)
    clean_ids, corrupt_ids = encode(lm, clean), encode(lm, corrupted)
    nc, nx = int(clean_ids.shape[1]), int(corrupt_ids.shape[1])
    if nc != nx:
        raise LabError(
            f"the clean and corrupted prompts must have the same number of tokens: clean has "
            f"{nc}, corrupted has {nx}"
        )
    a, b = single_token(lm, answer, "answer"), single_token(lm, wrong, "wrong answer")
    if a == b:
        raise LabError(f"the answer and the wrong answer are the same token {answer!r}")
    if "moe" in kinds and not sites.moe:
        if list(kinds) == ["moe"]:
            raise LabError(f"this model has no experts ({sites.family} is a dense model)")
        kinds.remove("moe")
    if "heads" in kinds and sites.attention_note:
        if list(kinds) == ["heads"]:
            raise LabError(sites.attention_note)
        kinds.remove("heads")
    timings: dict[str, ScanTiming] = {}
    grids: dict[str, np.ndarray] = {}
    with lm.exclusive("activation patching scan"):
        record, clean_logits = _record(lm, sites, clean_ids)
        corrupt_logits = forward(lm, corrupt_ids)[0, -1]
        positional = method == "batched" and any(k != "heads" for k in kinds)
        prefix = prefixes.record(lm, corrupt_ids, sites.n_layers) if positional else None

        def diff(logits: torch.Tensor) -> float:
            return float(logits[a] - logits[b])

        ld_clean, ld_corrupt = diff(clean_logits), diff(corrupt_logits)
        span = ld_clean - ld_corrupt
        if abs(span) < 1e-6:
            raise LabError(
                f"the clean and corrupted prompts give the same logit difference "
                f"({ld_clean:.3f}): there is nothing to restore"
            )
        n = nc
        for kind in kinds:
            if kind == "resid":
                keys = [(layer, p) for layer in range(sites.n_layers) for p in range(n)]
                source = record.resid
            elif kind == "moe":
                keys = [(layer, p) for layer in sites.moe_layers for p in range(n)]
                source = record.moe
            else:
                keys = [(layer, h) for layer in sites.head_layers for h in range(sites.n_heads)]
                source = record.heads

            def build(chunk, offset, kind=kind, source=source) -> Edits:
                rows = len(chunk)
                edits = Edits(batch=rows)
                if kind == "heads":
                    for row, (layer, head) in enumerate(chunk):
                        keep = edits.head_keep.setdefault(layer, torch.ones(rows, sites.n_heads))
                        keep[row, head] = 0.0
                        edits.head_fill[layer] = source[layer][:1]
                    return edits
                target = edits.resid_set if kind == "resid" else edits.moe_set
                by_layer: dict[int, list[tuple[int, int]]] = {}
                for row, (layer, p) in enumerate(chunk):
                    by_layer.setdefault(layer, []).append((row, p))
                for layer, pairs in by_layer.items():
                    rows_t = torch.tensor([r for r, _ in pairs])
                    pos_t = torch.tensor([p for _, p in pairs])
                    # Relative to the pass's first token (the prefix holds the ones before).
                    target[layer] = RowSet(rows_t, pos_t - offset, source[layer][0, pos_t])
                return edits

            logits, timing = _run(
                lm,
                sites,
                corrupt_ids,
                keys,
                build,
                method=method,
                max_rows=max_rows,
                progress=progress,
                prefix=prefix if kind != "heads" else None,
                position=lambda key: key[1],
            )
            timings[kind] = timing
            if kind == "heads":
                grid = np.full((sites.n_layers, sites.n_heads), np.nan)
                for (layer, head), row in logits.items():
                    grid[layer, head] = (diff(row) - ld_corrupt) / span
            else:
                layers = list(range(sites.n_layers)) if kind == "resid" else sites.moe_layers
                grid = np.full((len(layers), n), np.nan)
                for (layer, p), row in logits.items():
                    grid[layers.index(layer), p] = (diff(row) - ld_corrupt) / span
            grids[kind] = grid
        del record, prefix
    return PatchingResult(
        model=lm.name,
        clean=clean,
        corrupted=corrupted,
        clean_tokens=token_texts(lm.tokenizer, clean_ids[0].tolist()),
        corrupted_tokens=token_texts(lm.tokenizer, corrupt_ids[0].tolist()),
        answer_text=answer,
        wrong_text=wrong,
        ld_clean=ld_clean,
        ld_corrupted=ld_corrupt,
        resid=grids.get("resid"),
        heads=grids.get("heads"),
        moe=grids.get("moe"),
        moe_layers=list(sites.moe_layers),
        kinds=list(sites.kinds),
        timings=timings,
    )


def finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]
