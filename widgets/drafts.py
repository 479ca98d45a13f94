"""Live view of a speculative generation's drafts (``llmlab.accel.DraftTrace``)."""

from __future__ import annotations

from llmlab.widgets.base import HERE, LabWidget

#: The module and its style, for views that draw drafts inside themselves (the accel panel).
DRAFTS_ESM = HERE / "drafts.js"
DRAFTS_CSS = HERE / "drafts.css"


class DraftsView(LabWidget):
    _esm = HERE / "drafts.js"
    _css = HERE / "drafts.css"


def _register() -> None:
    # Registered here so widgets/__init__.py needs only one import line for this view.
    from llmlab.accel.spec_trace import DraftTrace

    DraftsView.register(DraftTrace)


_register()
