"""Live logit-lens view: the layer × token grid with its colourings, per-layer bars and cell
details; with a compared variant, A, B and where they part. The payload holds everything (top
tokens per cell, per-cell statistics), so the offline copy works in full."""

from __future__ import annotations

from llmlab.widgets.base import HERE, LabWidget


class LensView(LabWidget):
    _esm = HERE / "lens.js"
    _css = HERE / "lens.css"


def _register() -> None:
    # Registered here so widgets/__init__.py needs only one import line for this view.
    from llmlab.lens.result import LensComparison, LensResult

    LensView.register(LensResult, LensComparison)


_register()
