"""Steering vectors from a contrast of two prompts, and generation beside the plain answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmlab.errors import LabError
from llmlab.interventions.edits import Edits, Recording, applied, forward
from llmlab.interventions.result import InterventionGeneration
from llmlab.interventions.sites import sites_of
from llmlab.interventions.spec import (
    VECTORS,
    SteeringVector,
    intervened,
    label_of,
    parse,
    require_weights,
)

if TYPE_CHECKING:
    from llmlab.models.loaded import LoadedModel


def steering_vector(
    lm: LoadedModel, positive: str, negative: str, *, layer: int, name: str | None = None
) -> SteeringVector:
    """Mean residual stream (``layer``'s output, over the prompt's tokens) of ``positive``
    minus that of ``negative``; registered under ``name`` for specs (``steer=NAME*4``)."""
    from llmlab.interventions.scans import encode

    require_weights(lm)
    sites = sites_of(lm)
    sites.check_layer(layer)
    means = []
    with lm.exclusive("steering vector"):
        for text in (positive, negative):
            record = Recording()
            with applied(sites, Edits(), record=record):
                forward(lm, encode(lm, text))
            means.append(record.resid[layer][0].float().mean(dim=0).cpu())
    name = name or f"v{len(VECTORS) + 1}"
    if "*" in name or "," in name or "=" in name:
        raise LabError(f"steering vector name {name!r}: use letters, digits, - or _")
    vector = SteeringVector(name, layer, means[0] - means[1], positive, negative)
    VECTORS[name] = vector
    return vector


def generate_with(
    lm: LoadedModel,
    prompt: str,
    spec: Any,
    settings: Any = None,
    *,
    raw: bool = False,
    **fields: Any,
) -> InterventionGeneration:
    """Answers to ``prompt`` without and with the interventions of ``spec`` (greedy unless
    the settings sample; a seed makes both draws alike)."""
    from llmlab.generation.engine import generate
    from llmlab.generation.settings import GenerationSettings

    items = parse(spec, lm)
    if not items:
        raise LabError("give an intervention, e.g. ablate=13.8 or steer=NAME*4")
    config = GenerationSettings.of(settings, **fields)
    plain = generate(lm, prompt, config, raw=raw)
    with intervened(lm, items):
        changed = generate(lm, prompt, config, raw=raw)
    return InterventionGeneration(lm.name, prompt, label_of(items), plain, changed)
