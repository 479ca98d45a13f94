"""Live view of the demo MoE's training: loss curve, the probe's routing redrawn every few
steps, expert load and MI per layer, a step slider and a Stop button."""

from __future__ import annotations

import threading
import time
from typing import Any

from llmlab.widgets.base import HERE, LabWidget

#: Redraws are throttled: the payload carries every snapshot so far.
REFRESH_S = 0.5


class MoeTrainingView(LabWidget):
    _esm = HERE / "moe_training.js"
    _css = HERE / "moe_training.css"

    def __init__(self, run: Any, **kwargs: Any) -> None:
        super().__init__(run, **kwargs)
        self._lock = threading.Lock()
        self._last = 0.0
        self.on_msg(self._on_message)
        run.subscribe(self._on_event)

    def _on_message(self, widget: Any, content: dict, buffers: list) -> None:
        if isinstance(content, dict) and content.get("type") == "stop":
            self.result.stop()

    def _on_event(self, run: Any) -> None:
        now = time.monotonic()
        if not run.done and now - self._last < REFRESH_S:
            return
        with self._lock:
            self._last = now
            self.payload = run.payload()
        if run.done:  # the saved copy shows the finished run, not its first steps
            self.refresh_offline_copy()
