"""Live attention view: head view, grid, per-head table and diff in one widget.

The initial payload is compact (8-bit thumbnails, one layer's lines); the front end asks for
full-resolution heads, other layers and exact rows with custom messages answered here.
"""

from __future__ import annotations

from typing import Any

from llmlab.widgets.base import HERE, LabWidget


class AttentionView(LabWidget):
    _esm = HERE / "attention.js"
    _css = HERE / "attention.css"

    def __init__(self, result: Any) -> None:
        super().__init__(result)
        self.on_msg(self._on_request)

    def _on_request(self, _widget: Any, content: dict, _buffers: list) -> None:
        reply, buffers = self.result.answer(content)
        self.send(reply, buffers)


def _register() -> None:
    # Registered here so widgets/__init__.py needs only one import line for this view.
    from llmlab.attention.result import AttentionComparison, AttentionResult
    from llmlab.results import register_view

    register_view(AttentionResult, AttentionView)
    register_view(AttentionComparison, AttentionView)


_register()
