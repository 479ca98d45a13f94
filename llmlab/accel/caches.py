"""What a family's KV cache can do, asked of the model itself where it can be.

Two accelerations lean on the cache beyond plain decoding: ``kv=static`` (and ``compile=on``)
preallocate it to full length, and speculative decoding (``spec=``) feeds several drafted
tokens into a filled cache and crops it back after rejections. Every causal-LM family was tried
with both (``python -m llmlab.coverage``, docs/families.md); the checks here refuse up front,
in one line, the families where transformers cannot do it, instead of failing mid-generation.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmlab.models.loaded import LoadedModel

Availability = tuple[bool, str]

#: Families whose modeling code computes positions or masks from the tokens seen so far, not
#: from a preallocated cache's length, so a static cache breaks them (no attribute says so).
STATIC_CACHE_BROKEN = {
    "cpmant": "it prepends prompt-context slots the preallocated cache has no room for",
    "prophetnet": "its attention mask is built for the tokens seen, not the preallocated length",
    "xlm": "its attention mask is built for the tokens seen, not the preallocated length",
}

#: Families whose cache cannot take the several drafted tokens a check feeds at once.
DRAFTS_BROKEN = {
    "prophetnet": "its decoder's cache takes one new token per step (transformers asserts it), "
    "and checking drafts feeds several at once",
}

#: model -> (ok, why) of :func:`_probe_cache`; weak so unloading a model frees its entry.
_DRAFT_PROBES: weakref.WeakKeyDictionary[Any, Availability] = weakref.WeakKeyDictionary()


def static_cache(lm: LoadedModel | None) -> Availability:
    """Whether transformers' preallocated cache can run ``lm``."""
    if lm is None or not lm.capabilities.internals:
        return True, ""
    family = lm.family
    if family in STATIC_CACHE_BROKEN:
        return False, f"{family} cannot use a preallocated cache: {STATIC_CACHE_BROKEN[family]}"
    from transformers import StaticCache

    try:
        StaticCache(config=lm.model.config, max_cache_len=1)
    except KeyError as err:  # a layer type the cache has no layer class for (DeepSeek-V4)
        return False, (
            f"transformers' static cache has no layer for {family}'s {err.args[0]} layers"
        )
    except (ValueError, TypeError, NotImplementedError) as err:
        line = str(err).splitlines()[0] if str(err) else type(err).__name__
        return False, f"transformers' static cache cannot be built for {family} ({line})"
    return True, ""


def takes_drafts(lm: LoadedModel | None) -> Availability:
    """Whether ``lm`` keeps a KV cache that drafts can be checked against. Asked of the model
    itself, once per model (one forward pass over 8 tokens with a fresh cache, as generate
    runs it): BERT-style models loaded as decoders without ``is_decoder`` and XLM return none,
    MPT's config turns it off; :data:`DRAFTS_BROKEN` names the rest."""
    if lm is None or not lm.capabilities.internals or lm.is_encoder_decoder:
        return True, ""
    if lm.family in DRAFTS_BROKEN:
        return False, f"{lm.family} cannot check drafts: {DRAFTS_BROKEN[lm.family]}"
    model = lm.model
    if model not in _DRAFT_PROBES:
        _DRAFT_PROBES[model] = _probe_cache(lm)
    return _DRAFT_PROBES[model]


def _probe_cache(lm: LoadedModel) -> Availability:
    import torch
    from transformers import DynamicCache

    model, family = lm.model, lm.family
    none = f"speculative decoding needs a KV cache; {family} keeps none"
    if getattr(model.generation_config, "use_cache", True) is False:
        return False, f"{none}: its config turns the cache off (use_cache=False)"
    try:
        cache = DynamicCache(config=model.config)
    except Exception:  # noqa: BLE001 - a cache the generic class cannot build: generate decides
        return True, ""
    ids = torch.arange(3, 11, device=next(model.parameters()).device).unsqueeze(0)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), cache=cache, use_cache=True)
    if getattr(out, "cache", None) is None and getattr(out, "past_key_values", None) is None:
        if getattr(model.config.get_text_config(), "is_decoder", None) is False:
            return False, f"{none}: it is loaded as a bidirectional encoder (is_decoder=False)"
        return False, f"{none}: its forward pass returns no cache"
    # Checking drafts also crops the cache back after a rejection, which not every cache
    # allows, and transformers' release decides which: run one short prompt-lookup generation
    # (the ids repeat, so drafts are proposed and checked) and refuse in one line if it fails.
    ids = torch.tensor([[3, 4, 5, 6, 3, 4, 5, 6]], device=ids.device)
    try:
        with torch.inference_mode():
            model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                prompt_lookup_num_tokens=2,
                max_new_tokens=3,
                do_sample=False,
            )
    except Exception as err:  # noqa: BLE001 - any failure here means drafts cannot be checked
        line = str(err).splitlines()[0] if str(err) else ""
        why = f"{type(err).__name__}: {line}" if line else type(err).__name__
        return (
            False,
            f"{family} cannot check drafts here: transformers' assisted decoding fails ({why})",
        )
    return True, ""
