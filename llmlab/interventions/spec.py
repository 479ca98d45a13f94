"""Interventions as values: parsed from a spec, turned into edits, applied around any run.

Spec keys (comma-separated parts, composable with accelerations such as ``quant=int8``; ``/``
separates the items of one part, since ``+`` joins the parts of one target in a sweep's list):

- ``ablate=13.8`` — head 8 of layer 13; ``ablate=13.8/13.2``, ``ablate=13.*`` (every head of
  layer 13); ``ablate=13.8:mean`` replaces the head's output by its mean over the text's
  positions instead of zero;
- ``experts=-3`` — the router can no longer pick expert 3 (every MoE layer); ``experts=-3-5``
  removes 3 and 5; ``experts=2:-3`` only in layer 2;
- ``route=1.5:3/4`` — in MoE layer 1, token 5 goes to experts 3 and 4;
- ``steer=NAME*4`` — add 4 × the steering vector ``NAME`` (made by
  :func:`llmlab.interventions.steering_vector`) to the residual stream at its layer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from llmlab.errors import LabError
from llmlab.interventions.edits import Edits, applied
from llmlab.interventions.sites import ModelSites, sites_of

if TYPE_CHECKING:
    from llmlab.models.loaded import LoadedModel

KEYS = ("ablate", "experts", "route", "steer")
MODES = ("zero", "mean")


@dataclass(frozen=True)
class HeadAblation:
    heads: tuple[tuple[int, int], ...]  # (layer, head)
    mode: str = "zero"

    @property
    def label(self) -> str:
        by_layer: dict[int, list[int]] = {}
        for layer, head in self.heads:
            by_layer.setdefault(layer, []).append(head)
        text = "/".join(
            f"{layer}.{'*' if head < 0 else head}"
            for layer, heads in by_layer.items()
            for head in heads
        )
        return f"ablate={text}" + (":mean" if self.mode == "mean" else "")


@dataclass(frozen=True)
class ExpertRemoval:
    experts: tuple[int, ...]
    layers: tuple[int, ...] | None = None  # None: every MoE layer

    @property
    def label(self) -> str:
        where = f"{'/'.join(map(str, self.layers))}:" if self.layers else ""
        return f"experts={where}" + "".join(f"-{e}" for e in self.experts)


@dataclass(frozen=True)
class ForcedRouting:
    layer: int
    position: int
    experts: tuple[int, ...]

    @property
    def label(self) -> str:
        return f"route={self.layer}.{self.position}:{'/'.join(map(str, self.experts))}"


@dataclass(frozen=True, eq=False)
class SteeringVector:
    """Mean residual stream of ``positive`` minus that of ``negative`` at ``layer``'s output."""

    name: str
    layer: int
    vector: torch.Tensor  # (width,)
    positive: str
    negative: str

    @property
    def norm(self) -> float:
        return float(self.vector.norm())

    def __repr__(self) -> str:
        return (
            f"SteeringVector({self.name!r}: layer {self.layer}, norm {self.norm:.2f}, "
            f"{self.positive!r} − {self.negative!r})"
        )


@dataclass(frozen=True)
class Steering:
    vector: SteeringVector
    scale: float = 1.0

    @property
    def label(self) -> str:
        return f"steer={self.vector.name}*{self.scale:g}"


Intervention = HeadAblation | ExpertRemoval | ForcedRouting | Steering

#: Steering vectors by name, for specs (``steer=NAME*SCALE``).
VECTORS: dict[str, SteeringVector] = {}


def label_of(items: Sequence[Intervention]) -> str:
    return ",".join(i.label for i in items)


# -- parsing ---------------------------------------------------------------------------------
_HEAD = re.compile(r"^(\d+)\.(\d+|\*)$")


def is_key(key: str) -> bool:
    return key in KEYS


def parse_part(key: str, value: str, sites: ModelSites | None = None) -> Intervention:
    """One ``key=value`` part -> an intervention (checked against ``sites`` when given)."""
    value = value.strip()
    if key == "ablate":
        return _parse_ablate(value, sites)
    if key == "experts":
        return _parse_experts(value, sites)
    if key == "route":
        return _parse_route(value, sites)
    if key == "steer":
        return _parse_steer(value, sites)
    raise LabError(f"unknown intervention {key!r}; interventions: {', '.join(KEYS)}")


def require_weights(lm: Any) -> None:
    """One line for a served model: interventions change what runs inside the model."""
    capabilities = getattr(lm, "capabilities", None)
    if capabilities is not None and (capabilities.remote or not capabilities.internals):
        raise LabError(
            f"{lm.name} is a served model: interventions need the weights (load the model "
            "locally to ablate, patch or steer it)"
        )


def parse(
    spec: str | Intervention | Sequence[Intervention] | None, lm: Any = None
) -> list[Intervention]:
    """A spec (``"ablate=13.8,experts=-3"``), one intervention or several -> a checked list."""
    if lm is not None:
        require_weights(lm)
    sites = sites_of(lm) if lm is not None else None
    if spec is None or spec == "":
        return []
    if not isinstance(spec, str):
        items = [spec] if not isinstance(spec, (list, tuple)) else list(spec)
        if sites is not None:
            for item in items:
                check(item, sites)
        return items
    out = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not value:
            raise LabError(f"intervention {part!r}: write key=value, e.g. ablate=13.8")
        out.append(parse_part(key.strip(), value, sites))
    return out


def _parse_ablate(value: str, sites: ModelSites | None) -> HeadAblation:
    body, _, mode = value.partition(":")
    mode = mode or "zero"
    if mode not in MODES:
        raise LabError(f"ablate={value}: the mode after ':' is zero or mean, not {mode!r}")
    heads: list[tuple[int, int]] = []
    for item in body.split("/"):
        match = _HEAD.match(item.strip())
        if not match:
            raise LabError(
                f"ablate={value}: name heads as LAYER.HEAD (13.8), several with / (13.8/14.2), "
                "a whole layer as 13.*"
            )
        layer = int(match.group(1))
        # head -1 stands for every head of the layer (LAYER.*), expanded where applied.
        heads.append((layer, -1 if match.group(2) == "*" else int(match.group(2))))
    item = HeadAblation(tuple(dict.fromkeys(heads)), mode)
    if sites is not None:
        check(item, sites)
    return item


def _parse_experts(value: str, sites: ModelSites | None) -> ExpertRemoval:
    where, sep, body = value.rpartition(":")
    if not re.fullmatch(r"(-\d+)+", body.replace(" ", "")):
        raise LabError(
            f"experts={value}: name the experts to remove with a minus: experts=-3, "
            "experts=-3-5, or in one layer experts=2:-3"
        )
    experts = tuple(int(e) for e in re.findall(r"-(\d+)", body))
    layers = None
    if sep:
        try:
            layers = tuple(int(x) for x in where.split("/"))
        except ValueError:
            raise LabError(
                f"experts={value}: the layers before ':' are numbers (2 or 1/3)"
            ) from None
    item = ExpertRemoval(experts, layers)
    if sites is not None:
        check(item, sites)
    return item


def _parse_route(value: str, sites: ModelSites | None) -> ForcedRouting:
    match = re.fullmatch(r"(\d+)\.(\d+):(\d+(?:/\d+)*)", value.replace(" ", ""))
    if not match:
        raise LabError(
            f"route={value}: write route=LAYER.TOKEN:EXPERT/EXPERT (route=1.5:3/4 sends token 5 "
            "of MoE layer 1 to experts 3 and 4)"
        )
    experts = tuple(int(e) for e in match.group(3).split("/"))
    item = ForcedRouting(int(match.group(1)), int(match.group(2)), experts)
    if sites is not None:
        check(item, sites)
    return item


def _parse_steer(value: str, sites: ModelSites | None) -> Steering:
    name, _, scale = value.partition("*")
    vector = VECTORS.get(name.strip())
    if vector is None:
        known = ", ".join(VECTORS) or "none yet"
        raise LabError(
            f"steer={value}: no steering vector named {name.strip()!r} (made so far: {known}); "
            "make one with steering_vector(positive, negative, layer=..., name=...)"
        )
    try:
        factor = float(scale) if scale else 1.0
    except ValueError:
        raise LabError(f"steer={value}: the scale after '*' is a number") from None
    item = Steering(vector, factor)
    if sites is not None:
        check(item, sites)
    return item


def check(item: Intervention, sites: ModelSites) -> None:
    """One clear line when an intervention names something the model does not have."""
    if isinstance(item, HeadAblation):
        if item.mode not in MODES:
            raise LabError(f"ablation mode {item.mode!r}: choose zero or mean")
        for layer, head in item.heads:
            sites.check_head(layer, max(head, 0))
    elif isinstance(item, ExpertRemoval):
        sites.check_moe()
        for layer in item.layers or ():
            sites.check_moe(layer=layer)
        for expert in item.experts:
            sites.check_moe(expert=expert)
        left = sites.n_experts - len(set(item.experts))
        if left < sites.top_k:
            raise LabError(
                f"removing {len(set(item.experts))} of {sites.n_experts} experts leaves {left}, "
                f"fewer than the {sites.top_k} each token is routed to"
            )
    elif isinstance(item, ForcedRouting):
        sites.check_moe(layer=item.layer)
        for expert in item.experts:
            sites.check_moe(expert=expert)
        if len(item.experts) != sites.top_k or len(set(item.experts)) != len(item.experts):
            raise LabError(
                f"route: give {sites.top_k} different experts (each token goes to top-"
                f"{sites.top_k}), got {len(item.experts)}"
            )
    elif isinstance(item, Steering):
        sites.check_layer(item.vector.layer)
        width = _width(sites)
        if width and item.vector.vector.numel() != width:
            raise LabError(
                f"steering vector {item.vector.name!r} has {item.vector.vector.numel()} values "
                f"but this model's residual stream has {width}: it was made on another model"
            )
    else:
        raise LabError(f"not an intervention: {item!r}")


def _width(sites: ModelSites) -> int:
    return sites.width


# -- applying ---------------------------------------------------------------------------------
def edits_for(items: Sequence[Intervention], sites: ModelSites, batch: int = 1) -> Edits:
    """The edits of ``items`` for a pass of ``batch`` rows, every row intervened alike."""
    edits = Edits(batch=batch)
    for item in items:
        if isinstance(item, HeadAblation):
            for layer, head in item.heads:
                keep = edits.head_keep.setdefault(layer, torch.ones(1, sites.n_heads))
                keep[0, slice(None) if head < 0 else head] = 0.0
                if item.mode == "mean":
                    edits.head_mean.add(layer)
        elif isinstance(item, ExpertRemoval):
            for layer in item.layers or sites.moe_layers:
                mask = edits.expert_mask.setdefault(layer, torch.zeros(1, sites.n_experts))
                mask[0, list(item.experts)] = float("-inf")
        elif isinstance(item, ForcedRouting):
            edits.force.setdefault(item.layer, []).append((0, item.position, list(item.experts)))
        elif isinstance(item, Steering):
            add = item.scale * item.vector.vector.float()[None, :]
            layer = item.vector.layer
            edits.resid_add[layer] = edits.resid_add.get(layer, 0) + add
    return edits


#: Per model (id of its torch module): the label of the interventions running on it now.
_ACTIVE: dict[int, str] = {}


def active_on(lm: Any) -> str | None:
    """The label of the interventions hooked on ``lm``'s model right now, if any."""
    return _ACTIVE.get(id(getattr(lm, "model", lm)))


def pruned_bytes(lm: Any, items: Sequence[Intervention]) -> int:
    """Bytes of the expert weights ``items`` remove (what pruning them would save): each
    removed expert's share of its layer's routed experts' weights."""
    sites = sites_of(lm)
    total = 0
    for item in items:
        if not isinstance(item, ExpertRemoval):
            continue
        for layer in item.layers or sites.moe_layers:
            experts = sites.moe_by_layer[layer].experts
            size = sum(p.numel() * p.element_size() for p in experts.parameters())
            total += size * len(set(item.experts)) // max(1, sites.n_experts)
    return total


@contextmanager
def intervened(
    lm: LoadedModel, spec: str | Intervention | Sequence[Intervention] | None
) -> Iterator[LoadedModel]:
    """``lm`` with the interventions of ``spec`` applied to every forward pass in the block
    (generation, captures, lenses); exactly as before afterwards."""
    require_weights(lm)
    items = parse(spec, lm)
    sites = sites_of(lm)
    key, label = id(lm.model), label_of(items)
    with lm.exclusive(f"interventions ({label})"), applied(sites, edits_for(items, sites)):
        outer = _ACTIVE.get(key)
        _ACTIVE[key] = label if outer is None else f"{outer},{label}"
        try:
            yield lm
        finally:
            if outer is None:
                _ACTIVE.pop(key, None)
            else:
                _ACTIVE[key] = outer
