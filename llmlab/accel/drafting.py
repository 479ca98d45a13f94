"""Lean drafters for greedy speculative decoding, plugged into transformers' assisted decoding.

transformers' ``AssistedCandidateGenerator`` drafts by calling the draft model's whole
``generate()`` every step: it re-validates the generation config, rebuilds logits processors
and stopping criteria, and runs a "prefill" call before its decode calls. For a small draft
model that fixed cost is a large share of each step. Speculation is only offered for greedy
decoding here (``registry.check`` refuses sampling), and greedy verification compares token
ids only, so a drafter needs no logits at all: :class:`SelfDraft` keeps the draft model's own
KV cache and runs a plain argmax loop. :class:`Hybrid` asks prompt lookup first (free when the
context has a match) and the draft model otherwise.

Both implement transformers' ``CandidateGenerator`` interface (``get_candidates`` /
``update_candidate_strategy``), so the target's verification, cache roll-back and the
per-step recording in :mod:`llmlab.accel.spec_trace` are unchanged.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

#: Draft length bounds for the adaptive choice.
MIN_DRAFT, MAX_DRAFT, FIRST_DRAFT = 1, 8, 4
#: Weight of the newest observation in the running acceptance and cost estimates.
EMA = 0.3
#: Growth of a passed-over drafter's estimated rate per step, so that it is retried later.
RETRY_DRIFT = 1.15


class VerifyCost:
    """Seconds a target pass takes to verify ``k`` drafted tokens, fitted as ``a + b * k`` over
    the recent steps. On a CPU a pass over 9 tokens costs clearly more than one over 1 (the
    matmuls are partly compute-bound), which caps the useful draft length."""

    WINDOW = 32

    def __init__(self) -> None:
        self.points: list[tuple[int, float]] = []

    def add(self, k: int, seconds: float) -> None:
        self.points = [*self.points, (k, seconds)][-self.WINDOW :]

    def __call__(self, k: int) -> float:
        if not self.points:
            return 1.0
        ks = {p[0] for p in self.points}
        mean_k = sum(p[0] for p in self.points) / len(self.points)
        mean_s = sum(p[1] for p in self.points) / len(self.points)
        if len(ks) < 2:
            return mean_s  # one length seen so far: no slope yet, so longer drafts get tried
        cov = sum((p[0] - mean_k) * (p[1] - mean_s) for p in self.points)
        var = sum((p[0] - mean_k) ** 2 for p in self.points)
        slope = max(cov / var, 0.0)
        return max(mean_s + slope * (k - mean_k), 1e-6)


@dataclass
class DraftLength:
    """Chooses how many tokens to draft from what drafting and verifying cost here.

    With per-token acceptance ``a`` (the chance each next drafted token survives), ``k`` drafted
    tokens yield ``(1 - a^(k+1)) / (1 - a)`` tokens per target pass on average (the accepted
    run plus the target's own next token) and take ``verify(k) + k * d`` seconds, where ``d``
    is one draft token's time and ``verify`` is :class:`VerifyCost` (all measured as the run
    goes). The chosen ``k`` maximises tokens per second.
    """

    acceptance: float = 0.7
    draft_s: float = 0.0  # seconds per drafted token
    k: int = FIRST_DRAFT
    verify: VerifyCost = field(default_factory=VerifyCost)

    def observe(self, drafted: int, accepted: int, draft_s: float, verify_s: float) -> None:
        if drafted:
            # A geometric run: with one rejection, a = accepted / (accepted + 1); when every
            # token was accepted, at least accepted / drafted.
            rate = accepted / drafted if accepted == drafted else accepted / (accepted + 1)
            self.acceptance += EMA * (rate - self.acceptance)
            per_token = draft_s / drafted
            self.draft_s = (
                per_token if not self.draft_s else self.draft_s + EMA * (per_token - self.draft_s)
            )
        if verify_s > 0:
            self.verify.add(drafted, verify_s)
        self.k = self.best()

    def tokens_per_s(self, k: int) -> float:
        a = min(max(self.acceptance, 0.01), 0.99)
        return (1 - a ** (k + 1)) / (1 - a) / (self.verify(k) + k * self.draft_s)

    def best(self) -> int:
        return max(range(MIN_DRAFT, MAX_DRAFT + 1), key=self.tokens_per_s)


def first_layers(model: Any, n_layers: int) -> Any:
    """A view of ``model`` that runs only its first ``n_layers`` decoder layers, then the final
    norm and head (early exit). Shares every weight; the original is not touched."""
    import torch

    inner = model.model
    if n_layers >= len(inner.layers):
        return model
    short_inner = copy.copy(inner)
    short_inner.__dict__["_modules"] = dict(inner._modules)
    short_inner.layers = torch.nn.ModuleList(list(inner.layers)[:n_layers])
    short_inner.config = copy.copy(inner.config)
    short_inner.config.num_hidden_layers = n_layers
    if getattr(short_inner.config, "layer_types", None):
        short_inner.config.layer_types = short_inner.config.layer_types[:n_layers]
    short = copy.copy(model)
    short.__dict__["_modules"] = dict(model._modules)
    short.model = short_inner
    short.config = short_inner.config
    return short


class SelfDraft:
    """Greedy drafts from a (cheaper) copy of the target, with its own KV cache.

    Between steps the draft cache is cropped to the prefix it shares with the target's
    sequence (the accepted tokens) and fed whatever is new, in one call.
    """

    requires_model_outputs = False

    def __init__(self, draft_model: Any, eos_token_ids: Any, max_length: int) -> None:
        from transformers import DynamicCache

        self.model = draft_model
        self.cache = DynamicCache(config=draft_model.config)
        self.cached: Any = None  # (1, m) ids whose keys/values the cache holds
        self.eos = set() if eos_token_ids is None else set(eos_token_ids.reshape(-1).tolist())
        self.max_length = max_length
        self.length = DraftLength()
        self._drafted = 0
        self._draft_s = 0.0
        self._returned_at: float | None = None

    def get_candidates(self, input_ids: Any, **kwargs: Any) -> tuple[Any, None]:
        import torch

        n = input_ids.shape[1]
        k = min(self.length.k, self.max_length - n - 1)
        if k <= 0:
            self._drafted = 0
            return input_ids, None
        start = time.perf_counter()
        keep = self._shared_prefix(input_ids)
        if keep == n:  # everything is cached: recompute the last position for its logits
            keep = n - 1
        if self.cache.get_seq_length() > keep:
            self.cache.crop(keep - self.cache.get_seq_length())
        feed = input_ids[:, keep:]
        drafted: list[int] = []
        with torch.inference_mode():
            for _ in range(k):
                logits = self.model(input_ids=feed, cache=self.cache, use_cache=True).logits
                token = int(logits[0, -1].argmax())
                drafted.append(token)
                if token in self.eos:
                    break
                feed = torch.tensor([[token]], device=input_ids.device, dtype=input_ids.dtype)
        new = torch.tensor([drafted], device=input_ids.device, dtype=input_ids.dtype)
        candidates = torch.cat([input_ids, new], dim=1)
        self.cached = candidates[:, : self.cache.get_seq_length()]
        self._drafted = len(drafted)
        self._returned_at = time.perf_counter()
        self._draft_s = self._returned_at - start
        return candidates, None

    @property
    def num_drafting_tokens(self) -> int:
        """The most tokens one step drafts (transformers ≥ 5.25 asks every candidate generator,
        to size what a recurrent cache keeps for roll-back)."""
        return MAX_DRAFT

    def _shared_prefix(self, input_ids: Any) -> int:
        if self.cached is None:
            return 0
        m = min(self.cached.shape[1], input_ids.shape[1])
        same = (self.cached[0, :m] == input_ids[0, :m]).int()
        return m if bool(same.all()) else int(same.argmin())

    def update_candidate_strategy(self, input_ids: Any, scores: Any, num_matches: int) -> None:
        verify_s = time.perf_counter() - self._returned_at if self._returned_at else 0.0
        self.length.observe(self._drafted, num_matches, self._draft_s, verify_s)
        self._returned_at = None


class Hybrid:
    """Per step, prompt lookup or the self-draft, whichever is expected to give more tokens per
    second: lookup is free to draft but only as good as its recent steps were; it is tried
    whenever the context has an n-gram match until its measured rate falls below the draft's."""

    requires_model_outputs = False

    def __init__(self, lookup: Any, draft: SelfDraft) -> None:
        self.lookup, self.draft = lookup, draft
        self._last: Any = None
        self._proposed = 0
        self._returned_at: float | None = None
        self.lookup_rate: float | None = None  # tokens per second of recent lookup steps
        self.lookup_steps = self.draft_steps = 0

    def get_candidates(self, input_ids: Any, **kwargs: Any) -> tuple[Any, Any]:
        n = input_ids.shape[1]
        ids, logits = self.lookup.get_candidates(input_ids)
        proposed = ids.shape[1] - n
        draft_rate = self.draft.length.tokens_per_s(self.draft.length.k)
        if proposed and (self.lookup_rate is None or self.lookup_rate >= draft_rate):
            self._last, self._proposed = self.lookup, proposed
            self.lookup_steps += 1
            self._returned_at = time.perf_counter()
            return ids, logits
        if proposed and self.lookup_rate is not None:
            # A match was passed over: let the estimate drift up so lookup is retried later
            # (the text may have turned to copying the context).
            self.lookup_rate *= RETRY_DRIFT
        self._last = self.draft
        self.draft_steps += 1
        return self.draft.get_candidates(input_ids)

    @property
    def num_drafting_tokens(self) -> int:
        """The most tokens one step drafts, by either drafter (see SelfDraft's)."""
        lookup = getattr(self.lookup, "num_output_tokens", 0)
        return max(lookup, self.draft.num_drafting_tokens)

    def update_candidate_strategy(self, input_ids: Any, scores: Any, num_matches: int) -> None:
        if self._last is self.lookup and self._returned_at is not None:
            seconds = time.perf_counter() - self._returned_at
            self.draft.length.verify.add(self._proposed, seconds)
            rate = (num_matches + 1) / max(seconds, 1e-6)
            self.lookup_rate = (
                rate
                if self.lookup_rate is None
                else self.lookup_rate + EMA * (rate - self.lookup_rate)
            )
        elif self._last is self.draft:
            self.draft.update_candidate_strategy(input_ids, scores, num_matches)
