"""Interventions: test a hypothesis about a model, not just look at it.

Head ablation (zero or mean), MoE expert removal and forced routing, steering vectors; each
leaves the model exactly as it was. Scans batch many interventions per forward pass::

    from llmlab.interventions import head_importance, patching, intervened
    scan = head_importance(lm, "The capital of France is", answer=" Paris")
    scan.to_pandas().head()                         # heads by |Δ log p(answer)|
    p = patching(lm, clean, corrupted, " Paris", " Rome")
    with intervened(lm, "ablate=13.8"):             # any run inside sees the ablation
        ...
"""

from llmlab.interventions.result import (
    HeadImportance,
    InterventionGeneration,
    PatchingResult,
    ScanTiming,
)
from llmlab.interventions.scans import head_importance, patching, single_token
from llmlab.interventions.sites import ModelSites, sites_of
from llmlab.interventions.spec import (
    VECTORS,
    ExpertRemoval,
    ForcedRouting,
    HeadAblation,
    Intervention,
    Steering,
    SteeringVector,
    intervened,
    parse,
)
from llmlab.interventions.steering import generate_with, steering_vector

__all__ = [
    "VECTORS",
    "ExpertRemoval",
    "ForcedRouting",
    "HeadAblation",
    "HeadImportance",
    "Intervention",
    "InterventionGeneration",
    "ModelSites",
    "PatchingResult",
    "ScanTiming",
    "Steering",
    "SteeringVector",
    "generate_with",
    "head_importance",
    "intervened",
    "parse",
    "patching",
    "single_token",
    "sites_of",
    "steering_vector",
]
