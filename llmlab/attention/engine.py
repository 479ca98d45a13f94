"""From text to attention results: tokenize (optionally generate first), capture, compare."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from llmlab.attention import adapters, encode
from llmlab.attention.capture import THUMB, capture, check_layers, parse_layers, plan
from llmlab.attention.result import AttentionComparison, AttentionResult, StackDiff
from llmlab.errors import LabError
from llmlab.targets import opened
from llmlab.tokens import token_texts

if TYPE_CHECKING:
    import torch

    from llmlab.models.loaded import LoadedModel


#: Decoder tokens an encoder-decoder model generates for the view when ``generate`` is not set.
SEQ2SEQ_TOKENS = 16


def token_ids_for(
    lm: LoadedModel, text: str, *, chat: bool = False, generate: int = 0
) -> tuple[torch.Tensor, int, torch.Tensor | None]:
    """The ids to look at, shape (1, n), how many of them are the prompt, and for an
    encoder-decoder model the decoder's ids (its start token and what it generates).

    With ``generate=N`` a decoder-only model first answers (greedy, N new tokens at most) and
    the view covers prompt + answer: one forward pass over the whole sequence gives the same
    attention as the cached decoding steps did, row by row.
    """
    import torch

    from llmlab.generation.engine import prompt_with_answer

    if not text or not text.strip():
        raise LabError("the text is empty; give some text to look at")
    if generate < 0:
        raise LabError(f"--generate must be a positive number of tokens, got {generate}")
    if adapters.is_encoder_only(lm.model):
        if generate:
            lm.check_can_generate()
        ids = lm.tokenizer(text, return_tensors="pt").input_ids
        return ids, int(ids.shape[1]), None
    if adapters.is_encoder_decoder(lm.model.config):
        ids = lm.tokenizer(text, return_tensors="pt").input_ids.to(lm.device)
        with lm.exclusive("attention capture"), torch.inference_mode():
            out = lm.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=generate or SEQ2SEQ_TOKENS,
                do_sample=False,
            )
        return ids, int(ids.shape[1]), out[:, :].cpu()
    ids, n_prompt = prompt_with_answer(lm, text, chat=chat, generate_tokens=generate)
    return ids, n_prompt, None


def _label(lm: LoadedModel, extra: str = "") -> str:
    return f"{lm.name} ({extra or lm.dtype})"


def models_of(lab: Any) -> dict[str, Any]:
    """The models a ``--compare NAME`` is looked up in: ``lab``'s (a :class:`llmlab.Lab`);
    none without one."""
    return lab.models if lab is not None else {}


def attention_of_ids(
    lm: LoadedModel,
    ids: torch.Tensor,
    *,
    text: str,
    n_prompt: int,
    target_ids: torch.Tensor | None = None,
    layer: int | None = None,
    head: int | None = None,
    layers: str | list[int] | None = None,
    precision: str = "auto",
    label: str | None = None,
) -> AttentionResult:
    captured = capture(lm, ids, target_ids=target_ids, layers=layers, precision=precision)
    tok = lm.tokenizer
    id_list = ids[0].tolist()
    target = target_ids[0].tolist() if target_ids is not None else None
    result = AttentionResult(
        model=lm.name,
        family=lm.family,
        label=label or _label(lm),
        text=text,
        # Each token as the text it adds (" the", not "Ġthe"); half characters as bytes.
        tokens=token_texts(tok, id_list),
        token_ids=id_list,
        n_prompt=n_prompt,
        n_kv_heads=captured.main.n_kv_heads,
        captured=captured,
        target_tokens=token_texts(tok, target) if target is not None else None,
        target_ids=target,
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
    layers: str | list[int] | None = None,
    generate: int = 0,
    chat: bool | None = None,
    precision: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> AttentionResult:
    """Capture every head's attention over ``text`` (plus ``generate`` answer tokens).

    ``layers`` ("10-20", [3, 5]) keeps only those layers (default: all). The text is taken
    raw unless ``chat`` (default: chat when generating and the model has a chat template, so
    an instruct model answers rather than continues). An encoder-decoder model reads ``text``
    in its encoder and its decoder generates ``generate`` tokens (default 16) for the view.
    ``precision``: see :func:`llmlab.attention.capture.capture`. ``progress(step)`` is told
    each step as it starts (the magics show it).
    """
    step = progress or (lambda _step: None)
    layers = _check_layer_head(lm, layer, head, layers)
    if chat is None:
        chat = bool(generate) and lm.has_chat_template
    if generate:
        step(f"generating up to {generate} tokens")
    ids, n_prompt, target = token_ids_for(lm, text, chat=chat, generate=generate)
    step(f"capturing every head of {lm.name}")
    return attention_of_ids(
        lm,
        ids,
        text=text,
        n_prompt=n_prompt,
        target_ids=target,
        layer=layer,
        head=head,
        layers=layers,
        precision=precision,
    )


def _check_layer_head(
    lm: LoadedModel, layer: int | None, head: int | None, layers: Any = None
) -> list[int] | None:
    """Fail before any compute when the family cannot be captured or the layer or head does
    not exist or has no attention; the parsed ``layers`` (with ``layer`` in them)."""
    stacks = plan(lm)
    main = next(iter(stacks.values()))
    n_layers = len(main.layers)
    wanted = parse_layers(layers)
    if layer is not None:
        check_layers(lm, [layer], stacks)
        if wanted is not None and layer not in wanted:
            wanted = sorted({*wanted, layer})
    check_layers(lm, wanted, stacks)
    if layer is not None and not 0 <= layer < n_layers:
        raise LabError(f"layer {layer} is out of range: {lm.name} has layers 0-{n_layers - 1}")
    text = lm.config.get_text_config()
    n_heads = getattr(text, "num_attention_heads", None) or getattr(text, "n_head", 0)
    if head is not None and n_heads and not 0 <= head < n_heads:
        raise LabError(f"head {head} is out of range: {lm.name} has heads 0-{n_heads - 1}")
    return wanted


def compare_results(a: AttentionResult, b: AttentionResult) -> AttentionComparison:
    """Per-head differences b - a over the same tokens, per stack, over the layers both
    captured."""
    import torch

    if a.token_ids != b.token_ids or a.target_ids != b.target_ids:
        raise LabError("the two variants saw different tokens; compare over the same ids")
    diffs = {}
    for name in a.stack_names:
        sa, sb = a.stack(name), b.stack(name) if name in b.stack_names else None
        if sb is None or (len(sa.layers), sa.n_heads) != (len(sb.layers), sb.n_heads):
            raise LabError(
                f"cannot compare {a.label} ({len(sa.layers)} layers × {sa.n_heads} heads) with "
                f"{b.label}: the head grids differ"
            )
        layers = [i for i in sa.captured if i in sb.captured]
        C, H = len(layers), sa.n_heads
        change, max_abs = np.zeros((C, H)), np.zeros((C, H))
        thumbs = torch.empty((C, H, *sa.thumbs.shape[-2:]))
        nq = len(a.tokens_of(sa.queries))
        for slot, layer in enumerate(layers):
            # Row chunk by row chunk: the float32 working set stays small on long inputs.
            tv = torch.zeros(H, dtype=torch.float64)
            top = torch.zeros(H)
            pool = encode.RowPool(H, nq, len(a.tokens_of(sa.keys)), THUMB, signed=True)
            rows_a = sa.layer_rows(layer, pool.row_multiple)
            for (r0, _, pa), (_, _, pb) in zip(rows_a, sb.layer_rows(layer, pool.row_multiple)):
                d = pb - pa
                # Total variation per query row: half the L1 distance of the two rows.
                tv += (0.5 * d.abs().sum(-1)).sum(-1).double()
                top = torch.maximum(top, d.abs().amax(dim=(-1, -2)))
                pool.add(r0, d)
            change[slot] = (tv / nq).numpy()
            max_abs[slot] = top.numpy()
            thumbs[slot] = pool.result()
        diffs[name] = StackDiff(layers=layers, change=change, max_abs=max_abs, thumbs=thumbs)
    return AttentionComparison(a=a, b=b, diffs=diffs)


def compare(
    lm: LoadedModel,
    spec: str,
    text: str,
    *,
    lab: Any = None,
    layer: int | None = None,
    head: int | None = None,
    layers: str | list[int] | None = None,
    generate: int = 0,
    chat: bool | None = None,
    precision: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> AttentionComparison:
    """The same text through ``lm`` and through the variant ``spec`` names: another loaded
    model, or an acceleration config from :mod:`llmlab.accel` applied to ``lm`` (on a copy;
    ``lm`` is untouched), resolved by :func:`llmlab.targets.opened`; a bare value such as
    ``int8`` or ``bf16`` means the one setting that has it. Generated tokens (if any) come
    from ``lm`` and both variants read the same ids. ``progress(step)`` is told each step as
    it starts."""
    step = progress or (lambda _step: None)
    layers = _check_layer_head(lm, layer, head, layers)
    if chat is None:
        chat = bool(generate) and lm.has_chat_template
    if generate:
        step(f"generating up to {generate} tokens with {lm.name}")
    ids, n_prompt, target = token_ids_for(lm, text, chat=chat, generate=generate)
    options = dict(text=text, n_prompt=n_prompt, layers=layers, precision=precision)
    step(f"preparing the variant {spec.strip()}")
    with opened(spec, lm, models=models_of(lab)) as (other, variant):
        variant.require_same_tokens(lm, text, "their attention is over different tokens")
        label = variant.view_label(lm)
        step(f"capturing every head of {label}")
        b = attention_of_ids(
            other,
            ids.to(other.device),
            target_ids=target,
            label=label,
            **options,
        )
    step(f"capturing every head of {lm.name}")
    a = attention_of_ids(lm, ids, target_ids=target, layer=layer, head=head, **options)
    if b.label == a.label:
        b.label += " [B]"
    step("comparing the heads")
    return compare_results(a, b)
