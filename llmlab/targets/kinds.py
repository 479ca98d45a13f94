"""The registry of spec keys: which kind of change owns each ``key=value`` part of a target.

A kind (:class:`SpecKind`) owns a family of keys and turns its parts into one :class:`Modifier`
applied to the base model. Accelerations are the first kind; a new one (interventions:
``ablate=``, ``experts=``, ``steer=``) is one more :class:`SpecKind` in :data:`SPEC_KINDS`,
or :func:`register_spec_kind` from outside: nothing else in this package changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from llmlab.errors import LabError

if TYPE_CHECKING:
    from llmlab.accel.registry import AccelConfig
    from llmlab.models.loaded import LoadedModel


class Modifier(Protocol):
    """What the parts of one kind do to a base model."""

    kind: str  # the SpecKind's name
    label: str  # "quant=int8,spec=prompt-lookup"
    output_preserving: bool | None  # the kind's claim (None: no claim)

    def check(self, lm: LoadedModel) -> None:
        """Refuse, in one line, what ``lm`` on this machine cannot run."""

    def open(self, lm: LoadedModel) -> AbstractContextManager[LoadedModel]:
        """``lm`` changed for the block (a copy, or hooks removed on exit); ``lm`` is exactly
        as before afterwards."""


@dataclass(frozen=True)
class SpecKind:
    """One family of spec keys.

    ``owned_keys()``: the keys it owns (named when a spec is unknown). ``takes_bare(word)``: whether
    a part without ``=`` is one of its shorthands (``int8``, ``fast``). ``parse(text, base)``:
    its parts, comma-joined, into a :class:`Modifier` (``base``: the model they will apply to,
    or None when not known yet); mistakes raise one-line :class:`LabError`. ``order``: kinds
    apply in increasing order (accelerations first: they may copy the weights that later
    kinds hook). ``noun``: how a one-line error names the kind ("an acceleration config").
    """

    name: str
    noun: str
    owned_keys: Callable[[], Sequence[str]]
    takes_bare: Callable[[str], bool]
    parse: Callable[[str, Any], Modifier]
    order: int = 0


# -- accelerations (llmlab.accel) ---------------------------------------------------------------


@dataclass(frozen=True)
class AccelModifier:
    """The acceleration parts of a target (:class:`llmlab.accel.AccelConfig`)."""

    config: AccelConfig
    kind: str = "accel"

    @property
    def label(self) -> str:
        return self.config.label

    @property
    def output_preserving(self) -> bool:
        return self.config.output_preserving

    def check(self, lm: LoadedModel) -> None:
        from llmlab.accel.registry import check

        check(self.config, lm)

    def open(self, lm: LoadedModel) -> AbstractContextManager[LoadedModel]:
        from llmlab.accel.variant import variant

        return variant(lm, self.config)


def _accel_keys() -> Sequence[str]:
    from llmlab.accel.registry import ACCELERATIONS

    return tuple(ACCELERATIONS)


def _accel_bare(word: str) -> bool:
    from llmlab.accel.registry import PRESETS, bare_part

    return word in PRESETS or word in ("baseline", "none") or bare_part(word) is not None


def _accel_parse(text: str, base: Any) -> AccelModifier:
    from llmlab.accel.registry import parse_config

    return AccelModifier(parse_config(text, device=base.device if base is not None else None))


ACCEL = SpecKind(
    name="accel",
    noun="an acceleration config",
    owned_keys=_accel_keys,
    takes_bare=_accel_bare,
    parse=_accel_parse,
    order=0,
)

#: Every kind of spec key, by name. The accelerations also read any part no kind claims, so a
#: mistake there gets the registry's own one-line message ("unknown acceleration 'warp'").
SPEC_KINDS: dict[str, SpecKind] = {ACCEL.name: ACCEL}
FALLBACK_KIND = ACCEL.name


def register_spec_kind(kind: SpecKind) -> None:
    """Add a kind of spec keys; its keys must not be taken already."""
    taken = {k: other.name for other in SPEC_KINDS.values() for k in other.owned_keys()}
    clash = [k for k in kind.owned_keys() if taken.get(k, kind.name) != kind.name]
    if clash:
        raise LabError(f"spec keys {', '.join(clash)} are taken already ({taken[clash[0]]})")
    SPEC_KINDS[kind.name] = kind


def spec_keys() -> list[str]:
    """Every registered key, kind by kind."""
    return [k for kind in SPEC_KINDS.values() for k in kind.owned_keys()]


def owner(part: str) -> SpecKind:
    """The kind a part (``key=value`` or a bare word) belongs to."""
    if "=" in part:
        key = part.split("=", 1)[0].strip()
        for kind in SPEC_KINDS.values():
            if key in kind.owned_keys():
                return kind
    else:
        for kind in sorted(SPEC_KINDS.values(), key=lambda k: k.name == FALLBACK_KIND):
            if kind.takes_bare(part):
                return kind
    return SPEC_KINDS[FALLBACK_KIND]


def parse_parts(text: str, base: Any = None) -> tuple[Modifier, ...]:
    """``"quant=int8,ablate=13.8"`` -> one Modifier per kind, in the order kinds apply."""
    groups: dict[str, list[str]] = {}
    for part in text.split(","):
        part = part.strip()
        if part:
            groups.setdefault(owner(part).name, []).append(part)
    kinds = sorted((SPEC_KINDS[name] for name in groups), key=lambda k: k.order)
    return tuple(kind.parse(",".join(groups[kind.name]), base) for kind in kinds)
