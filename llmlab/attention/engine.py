"""From text to attention results: tokenize (optionally generate first), capture, compare."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from llmlab.attention import encode
from llmlab.attention.capture import THUMB, attention_modules, capture, n_kv_heads
from llmlab.attention.result import AttentionComparison, AttentionResult
from llmlab.errors import LabError
from llmlab.tokens import token_texts

if TYPE_CHECKING:
    import torch

    from llmlab.models.loaded import LoadedModel


def token_ids_for(
    lm: LoadedModel, text: str, *, chat: bool = False, generate: int = 0
) -> tuple[torch.Tensor, int]:
    """The ids to look at, shape (1, n), and how many of them are the prompt.

    With ``generate=N`` the model first answers (greedy, N new tokens at most) and the view
    covers prompt + answer: one forward pass over the whole sequence gives the same attention
    as the cached decoding steps did, row by row.
    """
    import torch

    from llmlab.generation.engine import encode_prompt
    from llmlab.generation.engine import generate as run_generate
    from llmlab.generation.settings import GenerationSettings

    if not text or not text.strip():
        raise LabError("the text is empty; give some text to look at")
    ids = encode_prompt(lm, text, raw=not chat)
    n_prompt = int(ids.shape[1])
    if generate:
        if generate < 0:
            raise LabError(f"--generate must be a positive number of tokens, got {generate}")
        result = run_generate(lm, text, GenerationSettings(max_new_tokens=generate), raw=not chat)
        new = torch.tensor([result.token_ids], dtype=ids.dtype, device=ids.device)
        ids = torch.cat([ids, new], dim=1)
    return ids, n_prompt


def _label(lm: LoadedModel, extra: str = "") -> str:
    return f"{lm.name} ({extra or lm.dtype})"


def attention_of_ids(
    lm: LoadedModel,
    ids: torch.Tensor,
    *,
    text: str,
    n_prompt: int,
    layer: int | None = None,
    head: int | None = None,
    label: str | None = None,
) -> AttentionResult:
    captured = capture(lm, ids)
    tok = lm.tokenizer
    id_list = ids[0].tolist()
    result = AttentionResult(
        model=lm.name,
        family=lm.family,
        label=label or _label(lm),
        text=text,
        # Each token as the text it adds (" the", not "Ġthe"); half characters as bytes.
        tokens=token_texts(tok, id_list),
        token_ids=id_list,
        n_prompt=n_prompt,
        n_kv_heads=n_kv_heads(lm),
        captured=captured,
    )
    result.check(layer, head)
    result.layer, result.head = layer, head
    return result


def attention(
    lm: LoadedModel,
    text: str,
    *,
    layer: int | None = None,
    head: int | None = None,
    generate: int = 0,
    chat: bool | None = None,
) -> AttentionResult:
    """Capture every head's attention over ``text`` (plus ``generate`` answer tokens).

    The text is taken raw unless ``chat`` (default: chat when generating and the model has a
    chat template, so an instruct model answers rather than continues).
    """
    _check_layer_head(lm, layer, head)
    if chat is None:
        chat = bool(generate) and lm.has_chat_template
    ids, n_prompt = token_ids_for(lm, text, chat=chat, generate=generate)
    return attention_of_ids(lm, ids, text=text, n_prompt=n_prompt, layer=layer, head=head)


def _check_layer_head(lm: LoadedModel, layer: int | None, head: int | None) -> None:
    """Fail before any compute when the family cannot be captured or the layer or head
    does not exist."""
    n_layers = len(attention_modules(lm.model, lm.family))
    n_heads = getattr(lm.config.get_text_config(), "num_attention_heads", 0)
    if layer is not None and not 0 <= layer < n_layers:
        raise LabError(f"layer {layer} is out of range: {lm.name} has layers 0-{n_layers - 1}")
    if head is not None and not 0 <= head < n_heads:
        raise LabError(f"head {head} is out of range: {lm.name} has heads 0-{n_heads - 1}")


def compare_results(a: AttentionResult, b: AttentionResult) -> AttentionComparison:
    """Per-head differences b - a over the same tokens."""
    import torch

    if a.token_ids != b.token_ids:
        raise LabError("the two variants saw different tokens; compare over the same ids")
    if (a.n_layers, a.n_heads) != (b.n_layers, b.n_heads):
        raise LabError(
            f"cannot compare {a.label} ({a.n_layers} layers × {a.n_heads} heads) with "
            f"{b.label} ({b.n_layers} × {b.n_heads}): the head grids differ"
        )
    L, H = a.n_layers, a.n_heads
    change, max_abs = np.zeros((L, H)), np.zeros((L, H))
    thumbs = torch.empty(a.captured.thumbs.shape)
    for layer in range(L):  # one layer at a time keeps the float32 working set small
        d = b.captured.weights[layer].float() - a.captured.weights[layer].float()
        # Total variation per query row: half the L1 distance of the two distributions.
        change[layer] = (0.5 * d.abs().sum(-1)).mean(-1).numpy()
        max_abs[layer] = d.abs().amax(dim=(-1, -2)).numpy()
        thumbs[layer] = encode.signed_max_pool(d, THUMB)
    return AttentionComparison(a=a, b=b, change=change, max_abs=max_abs, diff_thumbs=thumbs)


def _same_tokenizer(lm: LoadedModel, other: LoadedModel, ids: list[int], text: str) -> None:
    if lm.tokenizer is other.tokenizer:
        return
    same_vocab = len(lm.tokenizer) == len(other.tokenizer)
    if not same_vocab or other.tokenizer(text).input_ids != lm.tokenizer(text).input_ids:
        raise LabError(
            f"cannot compare {lm.name} with {other.name}: they use different tokenizers, so "
            "their attention is over different tokens"
        )


@contextmanager
def variant_model(lab: Any, lm: LoadedModel, spec: str) -> Iterator[tuple[LoadedModel, str]]:
    """The model a ``--compare`` spec names and its label: another loaded model, or an
    acceleration config from :mod:`llmlab.accel` applied to ``lm`` (on a copy; ``lm`` is
    untouched). A bare value such as ``int8`` or ``bf16`` means the one setting that has it."""
    spec = spec.strip()
    if lab is not None and spec in lab.models:
        other = lab.models[spec]
        yield other, _label(other)
        return
    from llmlab.accel import parse_config, variant

    try:
        cfg = parse_config(spec, device=lm.device)
    except LabError as err:
        loaded = ", ".join(lab.models) if lab is not None else "none"
        raise LabError(
            f"--compare {spec!r} is neither a loaded model ({loaded}) nor an acceleration "
            f"config: {err}"
        ) from None
    with variant(lm, cfg) as vlm:
        yield vlm, f"{lm.name} ({cfg.label})"


def compare(
    lm: LoadedModel,
    spec: str,
    text: str,
    *,
    lab: Any = None,
    layer: int | None = None,
    head: int | None = None,
    generate: int = 0,
    chat: bool | None = None,
) -> AttentionComparison:
    """The same text through ``lm`` and through the variant ``spec`` names; see
    :func:`variant_model`. Generated tokens (if any) come from ``lm`` and both variants read
    the same ids."""
    _check_layer_head(lm, layer, head)
    if chat is None:
        chat = bool(generate) and lm.has_chat_template
    ids, n_prompt = token_ids_for(lm, text, chat=chat, generate=generate)
    with variant_model(lab, lm, spec) as (other, label):
        _same_tokenizer(lm, other, ids[0].tolist(), text)
        b = attention_of_ids(other, ids.to(other.device), text=text, n_prompt=n_prompt, label=label)
    a = attention_of_ids(lm, ids, text=text, n_prompt=n_prompt, layer=layer, head=head)
    if b.label == a.label:
        b.label += " [B]"
    return compare_results(a, b)
