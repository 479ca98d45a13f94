"""Live attention view: head view, grid, per-head table and diff in one widget.

The initial payload is compact (8-bit thumbnails, one layer's lines); the front end asks for
full-resolution heads, other layers and exact rows with custom messages answered here.
"""

from __future__ import annotations

from typing import Any

from llmlab.widgets.base import HERE, AnsweringView


class AttentionView(AnsweringView):
    _esm = HERE / "attention.js"
    _css = HERE / "attention.css"
    offline_note = (
        "Offline copy: exact per-token rows, and for long inputs some layers' head views and "
        "full-resolution heads, need the running kernel (hover values use what the page holds)."
    )

    @classmethod
    def offline_requests(cls, result: Any) -> list[dict[str, Any]]:
        # Head-view lines of every layer, nearest the first shown layer first, then (for a
        # comparison) the full heads of the most changed head, which the Diff tab opens on,
        # then the Link tab's table of every head's weights, then full heads layer by layer
        # (short inputs fit many; the budget decides).
        import numpy as np

        compare = hasattr(result, "b")
        first = result.a if compare else result
        sides = ("a", "b") if compare else ("a",)

        def layers(name: str) -> list[int]:
            start = first.initial_layer(name)
            return sorted(first.stack(name).captured, key=lambda layer: (abs(layer - start), layer))

        in_payload = (first.captured.main.name, first.initial_layer(), "a")  # payload's lines
        # The Link tab's table of every head's weights (short inputs), as the view asks for it.
        links = [
            {"kind": "links", "stack": name, "layer": first.stack(name).captured[0], "which": w}
            for name in first.stack_names
            for w in sides
        ]
        requests = [
            {"kind": "lines", "stack": name, "layer": layer, "which": which}
            for name in first.stack_names
            for layer in layers(name)
            for which in sides
            if (name, layer, which) != in_payload
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
        requests += links
        requests += [
            {"kind": "head", "stack": name, "layer": layer, "head": head, "which": which}
            for name in first.stack_names
            for layer in layers(name)
            for head in range(first.n_heads)
            for which in (("a", "b", "diff") if compare else ("a",))
        ]
        return requests


def _register() -> None:
    # Registered here so widgets/__init__.py needs only one import line for this view.
    from llmlab.attention.result import AttentionComparison, AttentionResult

    AttentionView.register(AttentionResult, AttentionComparison)


_register()
