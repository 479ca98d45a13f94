"""Interventions as a kind of spec key in the one target language (:mod:`llmlab.targets`):
``ablate=``, ``experts=``, ``route=``, ``steer=`` compose with accelerations
(``quant=int8,ablate=13.8``) wherever a target is accepted: ``--compare`` of attention, lens
and MoE views, ``%llm generate --accel``, tradeoff sweeps.

Importing this module registers the kind; it imports no torch (the parts are parsed and
applied by :mod:`llmlab.interventions.spec` when first used).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from llmlab.targets.kinds import SPEC_KINDS, SpecKind, register_spec_kind

KIND = "interventions"
KEYS = ("ablate", "experts", "route", "steer")


@dataclass(frozen=True)
class InterventionModifier:
    """The intervention parts of a target (``ablate=13.8,experts=-3``)."""

    text: str
    kind: str = KIND
    #: Interventions change what the model computes: never output-preserving.
    output_preserving: bool = False

    @property
    def items(self) -> list[Any]:
        from llmlab.interventions.spec import parse

        return parse(self.text)

    @property
    def label(self) -> str:
        from llmlab.interventions.spec import label_of

        return label_of(self.items)

    def check(self, lm: Any) -> None:
        from llmlab.interventions.spec import parse

        parse(self.text, lm)

    @contextmanager
    def open(self, lm: Any) -> Iterator[Any]:
        """``lm`` with the interventions hooked for the block; when the parts remove experts,
        a view of ``lm`` whose ``weight_bytes`` leaves out the removed experts' weights (what
        pruning them would save). Opening the same parts again on a model that already runs
        them (a sweep opens a target, then generates through it) adds nothing twice."""
        from llmlab.interventions.spec import active_on, intervened, pruned_bytes

        if active_on(lm) == self.label:
            yield lm
            return
        with intervened(lm, self.text):
            saved = pruned_bytes(lm, self.items)
            yield _Pruned.of(lm, saved) if saved else lm


def _pruned_class() -> type:
    from llmlab.models.loaded import LoadedModel

    @dataclass
    class Pruned(LoadedModel):
        """A loaded model whose removed experts' weights are not counted."""

        removed_bytes: int = 0

        @property
        def weight_bytes(self) -> int:
            return LoadedModel.weight_bytes.fget(self) - self.removed_bytes

        @classmethod
        def of(cls, lm: Any, removed: int) -> Any:
            fields = {f.name: getattr(lm, f.name) for f in dataclasses.fields(LoadedModel)}
            return cls(**fields, removed_bytes=removed)

    return Pruned


class _Lazy:
    cls: type | None = None

    def of(self, lm: Any, removed: int) -> Any:
        if self.cls is None:
            self.cls = _pruned_class()
        return self.cls.of(lm, removed)


_Pruned = _Lazy()


def _parse(text: str, base: Any) -> InterventionModifier:
    from llmlab.interventions.spec import parse

    parse(text, base)  # refuses a mistake in one line, now
    return InterventionModifier(text)


INTERVENTIONS = SpecKind(
    name=KIND,
    noun="an intervention (ablate=, experts=, route=, steer=)",
    owned_keys=lambda: KEYS,
    takes_bare=lambda word: False,
    parse=_parse,
    order=10,  # after accelerations: hooks go on the (possibly copied) model they made
)

if KIND not in SPEC_KINDS:
    register_spec_kind(INTERVENTIONS)
