"""A served model as one point of a tradeoff sweep, measured on the sweep's prompts beside the
local configurations.

Latency comes from the timed streamed runs (no log-probabilities asked: on llama.cpp they cut
decode speed about five-fold). Quality comes from one extra greedy request per prompt *with*
the server's top log-probabilities, judged by the local reference model:

- greedy identical: the served text equals the local baseline's text;
- top-1 agreement: the local model reads the served answer (teacher-forced, re-tokenized with
  its own tokenizer) and at each position where the served pieces line up with its tokens we
  check that both put the most probability on the same token;
- KL: only on the support the server reveals (its top-k tokens at each position), both
  distributions renormalized there. It is labelled with that support; it is not the full KL.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from llmlab.measure.stats import Spread
from llmlab.served.generate import request_body, stream_request

if TYPE_CHECKING:
    from llmlab.models.loaded import LoadedModel
    from llmlab.served.model import ServedModel
    from llmlab.tradeoff.result import SweepPoint

#: Top log-probabilities asked for in the quality pass (llama.cpp and vLLM allow 20).
QUALITY_TOP_K = 5


def served_figures(
    local: LoadedModel,
    sm: ServedModel,
    point: SweepPoint,
    *,
    prompts: list[str],
    reference_texts: list[str],
    reference_ids: list[list[int]],
    max_new_tokens: int,
    usd_per_hour: float | None,
) -> None:
    """Cost and quality of a served point (its latency is already on ``point``)."""
    notes = ["memory, weights and KV live on the server (not measured)"]
    point.peak_memory_bytes = None
    point.peak_memory_kind = "on the server"
    if usd_per_hour is not None and point.latency is not None:
        point.usd_per_mtok = point.latency.s_per_token.scaled(usd_per_hour / 3600 * 1e6)
    else:
        notes.append(f"no $/1M tokens: give its hourly price, e.g. --price {sm.name}=0.50")
    if not reference_ids:
        notes.append("no quality figures: the local reference did not run")
        point.quality_note = "; ".join(notes)
        return
    from llmlab.generation.settings import GenerationSettings

    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    top1: list[float] = []
    kl: list[float] = []
    matches, firsts = [], []
    mismatched_runs = 0
    positions_without_support = 0
    for prompt, ref_text, ref_ids, timed_text in zip(
        prompts, reference_texts, reference_ids, point.texts
    ):
        top_k = sm.capabilities.top_k(QUALITY_TOP_K)
        path, body = request_body(sm.model_id, prompt, settings, chat=True, logprobs=top_k)
        run = stream_request(sm.endpoint, path, body)
        if run.text != timed_text:
            mismatched_runs += 1
        tok = local.tokenizer
        served_ids = tok(run.text, add_special_tokens=False).input_ids
        same = run.text == ref_text
        first = next(
            (i for i, (a, b) in enumerate(zip(ref_ids, served_ids)) if a != b),
            min(len(ref_ids), len(served_ids)),
        )
        matches.append(same)
        firsts.append(first)
        agree, divergences, missing = _position_figures(local, prompt, served_ids, run)
        if agree:
            top1.append(sum(agree) / len(agree))
        kl.extend(divergences)
        positions_without_support += missing
    point.greedy_matches, point.first_divergence = matches, firsts
    point.top1 = Spread(top1, headline="mean")
    if kl:
        point.kl = Spread(kl, headline="mean")
        notes.append(
            f"KL on the server's top-{QUALITY_TOP_K} tokens per position, both distributions "
            f"renormalized there ({len(kl)} positions; not the full-vocabulary KL)"
        )
    else:
        notes.append("no KL: the server returned no top log-probabilities")
    if positions_without_support:
        notes.append(f"{positions_without_support} positions without KL (piece not in vocabulary)")
    notes.append("top-1 judged by the local reference on the served answer (teacher-forced)")
    if mismatched_runs:
        notes.append(f"the quality pass differed from the timed run on {mismatched_runs} prompts")
    point.quality_note = "; ".join(notes)


def _position_figures(
    local: LoadedModel, prompt: str, served_ids: list[int], run: Any
) -> tuple[list[bool], list[float], int]:
    """Per aligned position: top-1 agreement and KL on the served top-k support."""
    import torch

    from llmlab.generation.engine import encode_prompt
    from llmlab.measure.quality import continuation_logprobs

    if not served_ids:
        return [], [], 0
    tok = local.tokenizer
    prompt_ids = encode_prompt(local, prompt)[0].cpu()
    ids = torch.cat([prompt_ids, torch.tensor(served_ids, dtype=prompt_ids.dtype)])
    logprobs = continuation_logprobs(local.model, ids, prompt_ids.shape[0])  # (n, vocab)
    vocab = _piece_table(tok)
    agree: list[bool] = []
    divergences: list[float] = []
    missing = 0
    for i, token_id in enumerate(served_ids):
        if i >= len(run.pieces) or run.pieces[i] != tok.decode([token_id]):
            break  # the server's pieces stop lining up with our tokens: stop comparing here
        top = run.top[i] if i < len(run.top) else {}
        served_top1 = max(top, key=top.get) if top else run.pieces[i]
        local_top1 = tok.decode([int(logprobs[i].argmax())])
        agree.append(served_top1 == local_top1)
        if not top:
            continue
        support = [vocab.get(piece) for piece in top]
        if any(s is None for s in support):
            missing += 1
            continue
        served = _normalized(list(top.values()))
        mine = _normalized([float(logprobs[i, s]) for s in support])
        # KL(reference || served) on this support, as the local sweep's KL(reference || variant).
        divergences.append(max(0.0, sum(math.exp(a) * (a - b) for a, b in zip(mine, served))))
    return agree, divergences, missing


def _normalized(logprobs: list[float]) -> list[float]:
    peak = max(logprobs)
    z = peak + math.log(sum(math.exp(v - peak) for v in logprobs))
    return [v - z for v in logprobs]


_PIECES: dict[int, dict[str, int]] = {}


def _piece_table(tokenizer: Any) -> dict[str, int]:
    """Decoded text of each token id -> the id (pieces shared by several ids are left out)."""
    key = id(tokenizer)
    if key not in _PIECES:
        size = len(tokenizer)
        texts = tokenizer.batch_decode([[i] for i in range(size)])
        table: dict[str, int] = {}
        dupes: set[str] = set()
        for i, text in enumerate(texts):
            if text in table:
                dupes.add(text)
            table[text] = i
        _PIECES[key] = {t: i for t, i in table.items() if t not in dupes}
    return _PIECES[key]
