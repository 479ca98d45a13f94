"""Live view of a next-token distribution with temperature / top-k / top-p sliders."""

from __future__ import annotations

from typing import Any

import traitlets
from llmlab.widgets.base import HERE, LabWidget


class NextTokenView(LabWidget):
    _esm = HERE / "next_token.js"
    _css = HERE / "next_token.css"
    temperature = traitlets.Float(1.0).tag(sync=True)
    top_k = traitlets.Int(0).tag(sync=True)  # 0: off
    top_p = traitlets.Float(1.0).tag(sync=True)

    @classmethod
    def initial_state(cls, result: Any) -> dict[str, Any]:
        return {
            **super().initial_state(result),
            "temperature": result.temperature,
            "top_k": result.top_k or 0,
            "top_p": result.top_p or 1.0,
        }
