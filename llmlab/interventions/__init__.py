"""Interventions: test a hypothesis about a model, not just look at it.

Head ablation (zero or mean), MoE expert removal and forced routing, steering vectors; each
leaves the model exactly as it was. Scans batch many interventions per forward pass::

    from llmlab.interventions import head_importance, patching, intervened
    scan = head_importance(lm, "The capital of France is", answer=" Paris")
    scan.to_pandas().head()                         # heads by |Δ log p(answer)|
    p = patching(lm, clean, corrupted, " Paris", " Rome")
    with intervened(lm, "ablate=13.8"):             # any run inside sees the ablation
        ...

Importing this package registers ``ablate=``, ``experts=``, ``route=`` and ``steer=`` as spec
keys of :mod:`llmlab.targets` (cheaply: torch loads when an intervention is first used).
"""

from __future__ import annotations

import importlib
from typing import Any

from llmlab.interventions import keys as _keys  # noqa: F401  (registers the spec keys)

_LAZY = {
    "HeadImportance": "result",
    "InterventionGeneration": "result",
    "PatchingResult": "result",
    "ScanTiming": "result",
    "head_importance": "scans",
    "patching": "scans",
    "single_token": "scans",
    "ModelSites": "sites",
    "sites_of": "sites",
    "VECTORS": "spec",
    "ExpertRemoval": "spec",
    "ForcedRouting": "spec",
    "HeadAblation": "spec",
    "Intervention": "spec",
    "Steering": "spec",
    "SteeringVector": "spec",
    "intervened": "spec",
    "parse": "spec",
    "generate_with": "steering",
    "steering_vector": "steering",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"llmlab.interventions.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'llmlab.interventions' has no attribute {name!r}")
