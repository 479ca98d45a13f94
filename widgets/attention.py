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
    offline_note = (
        "Offline copy: every layer's head view and the thumbnails are here; full-resolution "
        "heads and exact rows need the running kernel."
    )

    def __init__(self, result: Any) -> None:
        super().__init__(result)
        self.on_msg(self._on_request)

    def _on_request(self, _widget: Any, content: dict, _buffers: list) -> None:
        reply, buffers = self.result.answer(content)
        self.send(reply, buffers)

    @classmethod
    def offline_requests(cls, result: Any) -> list[dict[str, Any]]:
        # Head-view lines of every layer, nearest the first shown layer first, then (for a
        # comparison) the full heads of the most changed head, which the Diff tab opens on,
        # then full heads layer by layer (short inputs fit many; the budget decides).
        import numpy as np

        compare = hasattr(result, "b")
        first = result.a if compare else result
        requests = []
        for name in first.stack_names:
            start = first.initial_layer(name)
            layers = sorted(
                first.stack(name).captured, key=lambda layer: (abs(layer - start), layer)
            )
            requests += [
                {"kind": "lines", "stack": name, "layer": layer, "which": which}
                for layer in layers
                for which in (("a", "b") if compare else ("a",))
            ]
        if compare:
            most = np.unravel_index(np.argmax(result.change), result.change.shape)
            slot, head = (int(i) for i in most)
            layer = result.layers[slot]
            requests[:0] = [
                {"kind": "head", "stack": first.stack_names[0], "layer": layer, "head": head}
                | {"which": which}
                for which in ("a", "b", "diff")
            ]
        requests += [
            {"kind": "head", "layer": layer, "head": head, "which": which}
            for layer in layers
            for head in range(first.n_heads)
            for which in (("a", "b", "diff") if compare else ("a",))
        ]
        return requests


def _register() -> None:
    # Registered here so widgets/__init__.py needs only one import line for this view.
    from llmlab.attention.result import AttentionComparison, AttentionResult

    AttentionView.register(AttentionResult, AttentionComparison)


_register()
