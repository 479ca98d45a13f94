"""Live views of intervention scans: head importance (heatmap, sortable table, a clicked
head's attention pattern) and activation patching (restored logit difference heatmaps).
The payload holds every number; a head's pattern is fetched on demand from the attention
captured with the scan, and the offline copy carries the patterns of the strongest heads."""

from __future__ import annotations

from typing import Any

import numpy as np
from llmlab.widgets.base import HERE, AnsweringView

#: Heads whose attention pattern the offline copy carries, strongest first.
OFFLINE_PATTERNS = 24


class InterventionView(AnsweringView):
    _esm = HERE / "interventions.js"
    _css = HERE / "interventions.css"
    offline_note = (
        "Offline copy: the attention patterns of the strongest heads are in this page; the "
        "others need the running kernel."
    )

    @classmethod
    def offline_requests(cls, result: Any) -> list[dict[str, Any]]:
        effects = getattr(result, "effects", None)
        if effects is None or getattr(result, "attention", None) is None:
            return []
        strength = np.where(np.isfinite(effects), np.abs(effects), -1.0)
        order = np.argsort(-strength, axis=None)[:OFFLINE_PATTERNS]
        heads = [np.unravel_index(i, effects.shape) for i in order]
        return [
            {"kind": "head", "layer": int(layer), "head": int(head)}
            for layer, head in heads
            if np.isfinite(effects[layer, head])
        ]


def _register() -> None:
    # Registered here so widgets/__init__.py needs only one import line for this view.
    from llmlab.interventions.result import HeadImportance, PatchingResult

    InterventionView.register(HeadImportance, PatchingResult)


_register()
