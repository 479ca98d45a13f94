"""Quality of a variant against a reference, measured on the same tokens.

Teacher forcing: both models read the *reference's* prompt + continuation, and we compare their
next-token distributions at every continuation position. That isolates what the variant changes
(quantization noise, a different dtype) from the avalanche that follows a first differing token
in free-running generation, which :func:`greedy_match` reports separately.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from llmlab.errors import LabError

if TYPE_CHECKING:
    import torch

    from llmlab.models.loaded import LoadedModel

#: The text perplexity is measured on unless the user gives one.
DEFAULT_TEXT_NAME = "perplexity.txt"


def default_text() -> str:
    """The perplexity text that ships with llmlab (plain English prose, written for it)."""
    return resources.files("llmlab").joinpath("data", DEFAULT_TEXT_NAME).read_text("utf-8")


def continuation_logprobs(model: Any, ids: torch.Tensor, start: int) -> torch.Tensor:
    """Log-probabilities (float64) the model gives at the positions predicting ``ids[start:]``.

    ``ids`` has shape ``(n,)``; the result has shape ``(n - start, vocab)``: row ``i`` is the
    distribution over the token at position ``start + i`` given everything before it.
    """
    import torch

    if not 0 < start < ids.shape[0]:
        raise LabError("teacher forcing needs at least one prompt token and one continuation token")
    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(ids[None].to(device)).logits[0, start - 1 : -1]
    return torch.log_softmax(logits.double(), dim=-1).cpu()


@dataclass
class TokenAgreement:
    """How a candidate's next-token distributions compare with the reference's, per position.

    ``kl``: KL(reference || candidate) in nats at each position; ``top1``: whether both put the
    most probability on the same token there.
    """

    kl: list[float]
    top1: list[bool]

    @property
    def mean_kl(self) -> float:
        return sum(self.kl) / len(self.kl) if self.kl else math.nan

    @property
    def top1_agreement(self) -> float:
        return sum(self.top1) / len(self.top1) if self.top1 else math.nan


def compare_logprobs(reference: torch.Tensor, candidate: torch.Tensor) -> TokenAgreement:
    """KL and top-1 agreement between two ``(positions, vocab)`` log-probability tensors."""
    if reference.shape != candidate.shape:
        raise LabError(
            f"the two models' distributions differ in shape ({tuple(reference.shape)} vs "
            f"{tuple(candidate.shape)}): their vocabularies must match to compare them"
        )
    # exp(ref) * (ref - cand) summed over the vocabulary; clamp tiny negative rounding to 0.
    kl = (reference.exp() * (reference - candidate)).sum(-1).clamp_min(0.0)
    top1 = reference.argmax(-1) == candidate.argmax(-1)
    return TokenAgreement(kl.tolist(), top1.tolist())


def greedy_match(reference_ids: list[int], candidate_ids: list[int]) -> tuple[bool, int]:
    """Whether two generations are token-identical, and the index of the first difference
    (the common length when one is a prefix of the other; the full length when equal)."""
    first = next(
        (i for i, (a, b) in enumerate(zip(reference_ids, candidate_ids)) if a != b),
        min(len(reference_ids), len(candidate_ids)),
    )
    return list(reference_ids) == list(candidate_ids), first


@dataclass
class Perplexity:
    value: float
    tokens: int  # tokens scored (the first token of the text has no prediction)
    nll_per_token: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "tokens": self.tokens}


def perplexity(lm: LoadedModel, text: str | None = None, *, max_tokens: int = 512) -> Perplexity:
    """exp(mean negative log-likelihood) of ``text`` (the shipped text by default).

    The text is cut to ``max_tokens`` tokens (and the model's context) so a sweep stays fast;
    the cut is the same for every configuration, so their figures compare.
    """
    import torch

    text = default_text() if text is None else text
    if not text.strip():
        raise LabError("the perplexity text is empty")
    ids = lm.tokenizer(text, return_tensors="pt").input_ids[0]
    ids = ids[: min(max_tokens, lm.context_length)]
    if ids.shape[0] < 2:
        raise LabError("the perplexity text is shorter than two tokens")
    logprobs = continuation_logprobs(lm.model, ids, 1)
    nll = -logprobs.gather(-1, ids[1:, None]).squeeze(-1)
    return Perplexity(float(torch.exp(nll.mean())), int(nll.shape[0]), nll.tolist())
