"""Live view of a MoE routing: tabs for the token map, load, co-activation, runs, inputs."""

from __future__ import annotations

from llmlab.widgets.base import HERE, LabWidget


class MoeRoutingView(LabWidget):
    _esm = HERE / "moe.js"
    _css = HERE / "moe.css"


def _register() -> None:
    # Registered here so widgets/__init__.py needs only one import line for this view.
    from llmlab.moe.result import MoeRouting

    MoeRoutingView.register(MoeRouting)

    from llmlab.widgets.moe_training import MoeTrainingView

    from llmlab.moe.training import MoeTrainingRun

    MoeTrainingView.register(MoeTrainingRun)


_register()
