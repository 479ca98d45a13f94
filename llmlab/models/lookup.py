"""Other loaded models, by name: where a name is looked up, and whether two models read the same
tokens.

A name in a target (``--compare NAME``, ``spec=draft:NAME``, ``served:NAME``) is looked up in
the mapping the caller passes (a :class:`llmlab.session.Lab`'s ``models``). A caller that passes
none gets the ``%llm`` session's models: :mod:`llmlab.session` registers them here with
:func:`use_default_models`, so nothing below the session imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

_default_models: Callable[[], Mapping[str, Any]] = dict


def use_default_models(provider: Callable[[], Mapping[str, Any]]) -> None:
    """Where a name is looked up when the caller passes no models (the ``%llm`` session's)."""
    global _default_models
    _default_models = provider


def loaded_models(models: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """``models``, or the ``%llm`` session's models when it is None."""
    return models if models is not None else _default_models()


def same_tokenizer(a: Any, b: Any, text: str | None = None) -> bool:
    """Do two tokenizers turn text into the same ids? The same object, or the same vocabulary
    (and, when ``text`` is given, the same ids for it). The one check for drafts, comparisons
    and sweeps: their token ids are fed to both models."""
    if a is b:
        return True
    try:
        if len(a) != len(b):
            return False
    except TypeError:  # no length: not a tokenizer ids can be shared with (a served vocabulary)
        return False
    vocab_a, vocab_b = getattr(a, "get_vocab", None), getattr(b, "get_vocab", None)
    if vocab_a is None or vocab_b is None or vocab_a() != vocab_b():
        return False
    return text is None or a(text).input_ids == b(text).input_ids
