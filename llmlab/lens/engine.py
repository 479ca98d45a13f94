"""From text to logit-lens results: tokenize (optionally generate first), read every layer,
compare two variants layer by layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from llmlab.errors import LabError
from llmlab.lens.capture import CHUNK, Residuals, residuals
from llmlab.lens.result import LensComparison, LensResult
from llmlab.targets import opened
from llmlab.tokens import token_text, token_texts

if TYPE_CHECKING:
    import torch

    from llmlab.models.loaded import LoadedModel

#: Top tokens kept per cell (the cell shows the first; hover shows all).
TOP_K = 5


@dataclass
class _Cells:
    """Per (row, position) statistics of one lens, filled row by row."""

    top_ids: np.ndarray  # (R, n, K) int64
    top_probs: np.ndarray  # (R, n, K) float32
    entropy: np.ndarray  # (R, n) nats
    kl: np.ndarray  # (R, n) KL(final || row), nats
    final_rank: np.ndarray  # (R, n) rank of the final top-1 token in this row (0 = top)
    final_prob: np.ndarray  # (R, n) this row's probability of the final top-1 token

    @classmethod
    def empty(cls, rows: int, n: int, k: int) -> _Cells:
        return cls(
            np.zeros((rows, n, k), np.int64),
            np.zeros((rows, n, k), np.float32),
            *(np.zeros((rows, n), np.float32) for _ in range(2)),
            np.zeros((rows, n), np.int64),
            np.zeros((rows, n), np.float32),
        )

    def fill(
        self,
        row: int,
        sl: slice,
        logp: torch.Tensor,
        final_logp: torch.Tensor,
        final_top: torch.Tensor,
    ) -> None:
        import torch

        k = self.top_ids.shape[-1]
        p = logp.exp()
        top_p, top_i = p.topk(k, dim=-1)
        self.top_ids[row, sl] = top_i.numpy()
        self.top_probs[row, sl] = top_p.numpy()
        self.entropy[row, sl] = -(p * logp).nansum(-1).numpy()
        q = final_logp.exp()
        self.kl[row, sl] = (q * (final_logp - logp)).nansum(-1).clamp_min(0).numpy()
        mine = logp.gather(-1, final_top[:, None])
        self.final_rank[row, sl] = (logp > mine).sum(-1).numpy()
        self.final_prob[row, sl] = torch.exp(mine[:, 0]).numpy()


def token_ids_for(
    lm: LoadedModel, text: str, *, chat: bool = False, generate: int = 0
) -> tuple[torch.Tensor, int]:
    """The ids to read, shape (1, n), and how many of them are the prompt. With
    ``generate=N`` the model first answers (greedy, N new tokens at most) and the lens covers
    prompt + answer."""
    from llmlab.generation.engine import prompt_with_answer

    if not text or not text.strip():
        raise LabError("the text is empty; give some text to read")
    if not lm.capabilities.internals:
        raise LabError(
            f"{lm.name} is served: the logit lens needs the model's hidden states and weights, "
            "which a server does not expose; load the weights with %llm load to read them"
        )
    if generate < 0:
        raise LabError(f"--generate must be a positive number of tokens, got {generate}")
    if getattr(lm.config, "is_encoder_decoder", False):
        raise LabError(
            f"the logit lens reads a decoder's residual stream token by token; {lm.family} is "
            "an encoder-decoder model (use %llm attention for its encoder and decoder)"
        )

    def fits(tokens: int) -> None:  # the lens of prompt + answer, before generating it
        from llmlab import memory

        itemsize = lm.model.dtype.itemsize
        memory.guard(memory.lens_capture(lm.config, tokens, hidden_bytes=itemsize), lm.device)

    return prompt_with_answer(lm, text, chat=chat, generate_tokens=generate, check=fits)


def _chunks(n: int) -> list[slice]:
    return [slice(i, min(i + CHUNK, n)) for i in range(0, n, CHUNK)]


def _read(res: Residuals, k: int = TOP_K) -> _Cells:
    """Every row of ``res`` read through the lens, chunk by chunk over positions."""
    rows, n = len(res.hidden), res.hidden[0].shape[0]
    cells = _Cells.empty(rows, n, k)
    for sl in _chunks(n):
        final = res.log_probs(rows - 1, sl.start, sl.stop)
        top = final.argmax(-1)
        for row in range(rows):
            logp = final if row == rows - 1 else res.log_probs(row, sl.start, sl.stop)
            cells.fill(row, sl, logp, final, top)
    return cells


def _result(
    lm: LoadedModel, ids: torch.Tensor, res: Residuals, cells: _Cells, **fields: Any
) -> LensResult:
    tok = lm.tokenizer
    id_list = ids[0].tolist()
    distinct = sorted(set(cells.top_ids.ravel().tolist()))
    return LensResult(
        model=lm.name,
        family=lm.family,
        tokens=token_texts(tok, id_list),
        token_ids=id_list,
        rows=res.row_labels(),
        reading=res.reader.describe(),
        top_ids=cells.top_ids,
        top_probs=cells.top_probs,
        entropy=cells.entropy,
        kl=cells.kl,
        final_rank=cells.final_rank,
        final_prob=cells.final_prob,
        vocab={i: token_text(tok, i) for i in distinct},
        max_error=res.max_error,
        **fields,
    )


def lens_of_ids(
    lm: LoadedModel, ids: torch.Tensor, *, text: str, n_prompt: int, label: str | None = None
) -> LensResult:
    res = residuals(lm, ids)
    return _result(
        lm, ids, res, _read(res), text=text, n_prompt=n_prompt, label=label or _label(lm)
    )


def _label(lm: LoadedModel) -> str:
    return f"{lm.name} ({lm.dtype})"


def lens(
    lm: LoadedModel,
    text: str,
    *,
    generate: int = 0,
    chat: bool | None = None,
) -> LensResult:
    """Read every layer's residual stream over ``text`` (plus ``generate`` answer tokens)
    through the model's final norm and unembedding.

    The text is taken raw unless ``chat`` (default: chat when generating and the model has a
    chat template, so an instruct model answers rather than continues).
    """
    if chat is None:
        chat = bool(generate) and lm.has_chat_template
    ids, n_prompt = token_ids_for(lm, text, chat=chat, generate=generate)
    return lens_of_ids(lm, ids, text=text, n_prompt=n_prompt)


def compare(
    lm: LoadedModel,
    spec: str,
    text: str,
    *,
    lab: Any = None,
    generate: int = 0,
    chat: bool | None = None,
) -> LensComparison:
    """The same tokens through ``lm`` and the variant ``spec`` names (another loaded model with
    the same tokenizer, or an acceleration config such as ``int8`` or ``dtype=bf16``): both
    lenses, and per row the KL between the two variants' readings and whether their top-1
    tokens agree."""
    import torch

    if chat is None:
        chat = bool(generate) and lm.has_chat_template
    ids, n_prompt = token_ids_for(lm, text, chat=chat, generate=generate)
    res_a = residuals(lm, ids)
    models = lab.models if lab is not None else {}
    with opened(spec, lm, models=models) as (other, variant):
        variant.require_same_tokens(lm, text, "their attention is over different tokens")
        label = variant.view_label(lm)
        res_b = residuals(other, ids.to(other.device))
        other_lm = other
    if len(res_a.hidden) != len(res_b.hidden):
        raise LabError(
            f"cannot compare {lm.name} ({res_a.n_layers} layers) with {label} "
            f"({res_b.n_layers} layers) row by row: the depths differ"
        )
    rows, n = len(res_a.hidden), len(ids[0])
    if res_a.logits.shape[-1] != res_b.logits.shape[-1]:
        raise LabError(f"cannot compare {lm.name} with {label}: their vocabularies differ")
    cells_a, cells_b = _Cells.empty(rows, n, TOP_K), _Cells.empty(rows, n, TOP_K)
    kl_ab = np.zeros((rows, n), np.float32)
    agree = np.zeros((rows, n), bool)
    for sl in _chunks(n):
        final_a = res_a.log_probs(rows - 1, sl.start, sl.stop)
        final_b = res_b.log_probs(rows - 1, sl.start, sl.stop).to(final_a.device)
        top_a, top_b = final_a.argmax(-1), final_b.argmax(-1)
        for row in range(rows):
            la = final_a if row == rows - 1 else res_a.log_probs(row, sl.start, sl.stop)
            lb = final_b if row == rows - 1 else res_b.log_probs(row, sl.start, sl.stop)
            lb = lb.to(la.device)
            cells_a.fill(row, sl, la, final_a, top_a)
            cells_b.fill(row, sl, lb, final_b, top_b)
            with torch.inference_mode():
                kl_ab[row, sl] = (la.exp() * (la - lb)).nansum(-1).clamp_min(0).numpy()
                agree[row, sl] = (la.argmax(-1) == lb.argmax(-1)).numpy()
    a = _result(lm, ids, res_a, cells_a, text=text, n_prompt=n_prompt, label=_label(lm))
    b = _result(other_lm, ids, res_b, cells_b, text=text, n_prompt=n_prompt, label=label)
    if b.label == a.label:
        b.label += " [B]"
    return LensComparison(a=a, b=b, kl=kl_ab, agree=agree)
