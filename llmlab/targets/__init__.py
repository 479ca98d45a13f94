"""Targets: every "other thing to run these tokens through", parsed and opened in one place.

A researcher compares: the model against its int8 copy, against another model, against a
served one (and, with interventions, against itself with a head ablated). Every command that
takes such a variant (``%llm attention/lens --compare``, ``%llm tradeoff --configs``,
``%llm generate --accel``, the accelerations panel, speculation drafts, load tests) resolves it
here, into one typed :class:`Target`.

The spec language
-----------------
A target is text, read relative to a *base* model (the model the command runs on):

=====================  ======================================================================
``baseline`` (or "")   the base model as it is
``NAME``               another loaded model, by the name ``%llm models`` lists (a name wins
                       over a spec part: a model loaded as ``int8`` is that model)
``served:NAME``        a loaded served model (``%llm load openai:URL --model NAME``)
``engine:E+OPT=V+...`` a serving engine started for the target and stopped after it
                       (``engine:vllm+prefix-caching=on``, :mod:`llmlab.served.engines`)
``key=value,...``      the base model changed by these parts; each key belongs to one kind
                       of spec key (below) and parts of several kinds compose
=====================  ======================================================================

Kinds of spec key (:data:`llmlab.targets.kinds.SPEC_KINDS`):

- accelerations (:mod:`llmlab.accel`): ``kv``, ``prefix``, ``spec``, ``quant``, ``attn``,
  ``dtype``, ``compile``. A bare value only one key takes stands for that part (``int8`` is
  ``quant=int8``, ``bf16`` is ``dtype=bf16``), a bare on/off key switches it on (``prefix``),
  and a preset name stands for its parts on the base model's device (``fast``).
  ``spec=draft:NAME`` drafts with another loaded model, looked up like ``NAME`` above.
- interventions (:mod:`llmlab.interventions`, registered when it is imported, which
  :mod:`llmlab.session` does): ``ablate=``, ``experts=``, ``steer=`` (see its docs).

Kinds apply in their ``order`` (accelerations first: a load-time part works on a private copy
of the weights, which later kinds then hook). Where a command takes a *list* of targets
(``%llm tradeoff --configs``), commas separate targets and ``+`` joins the parts of one:
``baseline,quant=int8,spec=prompt-lookup+quant=int8,served:vllm``.

An unknown spec is refused in one line naming what it could have been: the loaded models, the
``served:`` names (where the command takes them) and every kind of spec key, then the parser's
own reason ("unknown acceleration 'warp'; known: kv, prefix, ...").

Using a target
--------------
::

    from llmlab.targets import resolve
    t = resolve("quant=int8", lm, models=lab.models)
    t.kind, t.label, t.claim          # "variant", "quant=int8", False (approximates)
    t.tokenizer_compatible(lm)        # reads the same token ids as lm?
    t.weight_bytes()                  # the one weight counter (llmlab.models.facts)
    t.capabilities.internals          # can its attention / hidden states be read here?
    with t.open() as vlm: ...         # the model to run; lm is exactly as before afterwards
    t.generate(prompt, settings)      # through the engine its kind runs on

Adding a kind of target
-----------------------
A new family of spec keys is one :class:`~llmlab.targets.kinds.SpecKind` (its keys, the bare
words it takes, ``parse(text, base)`` returning a :class:`~llmlab.targets.kinds.Modifier`
with ``label``, ``output_preserving``, ``check(lm)`` and ``open(lm)``), added to
``SPEC_KINDS`` in :mod:`llmlab.targets.kinds` (or :func:`register_spec_kind`). The module that
implements it sits below this package (beside :mod:`llmlab.accel`), so the layering holds:
core ← models ← generation ← accel, served (and such engines) ← targets ← features.
"""

from llmlab.targets.kinds import (
    SPEC_KINDS,
    AccelModifier,
    Modifier,
    SpecKind,
    register_spec_kind,
    spec_keys,
)
from llmlab.targets.target import (
    ALL_KINDS,
    ENGINE,
    ENGINE_PREFIX,
    MODEL,
    SERVED,
    SERVED_PREFIX,
    VARIANT,
    Target,
    opened,
    resolve,
)

__all__ = [
    "ALL_KINDS",
    "ENGINE",
    "ENGINE_PREFIX",
    "MODEL",
    "SERVED",
    "SERVED_PREFIX",
    "SPEC_KINDS",
    "VARIANT",
    "AccelModifier",
    "Modifier",
    "SpecKind",
    "Target",
    "opened",
    "register_spec_kind",
    "resolve",
    "spec_keys",
]
