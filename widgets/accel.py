"""The ``%llm accel`` panel: toggles for the active model, a Run button, two runs side by side.

The front end sends ``{"type": "check", "config"}`` on every toggle (the engine answers with the
label, whether it keeps the output, or why it cannot run) and ``{"type": "run", ...}`` on Run;
the kernel generates and syncs the runs back.
"""

from __future__ import annotations

from typing import Any

import traitlets
from llmlab.widgets.base import HERE, LabWidget
from llmlab.widgets.drafts import DRAFTS_CSS, DRAFTS_ESM

from llmlab.accel.panel import AccelPanelState
from llmlab.errors import LabError, one_line


class AccelPanel(LabWidget):
    _esm = HERE / "accel.js"
    _css = HERE / "accel.css"
    runs = traitlets.List().tag(sync=True)
    status = traitlets.Dict().tag(sync=True)  # {busy, error, label, preserving}
    drafts_view = traitlets.Dict().tag(sync=True)  # the drafts view's {esm, css}, drawn per run
    offline_note = (
        "Offline copy: the runs are shown as they were; choosing a configuration and Run need "
        "the running kernel."
    )

    def __init__(self, state: AccelPanelState) -> None:
        super().__init__(state)
        self.on_msg(self._on_message)

    @classmethod
    def initial_state(cls, result: AccelPanelState) -> dict[str, Any]:
        return {
            **super().initial_state(result),
            "runs": list(result.runs),
            "drafts_view": {
                "esm": DRAFTS_ESM.read_text(encoding="utf-8"),
                "css": DRAFTS_CSS.read_text(encoding="utf-8"),
            },
            "status": {"busy": False, **result.describe(result.config)},
        }

    @property
    def state(self) -> AccelPanelState:
        return self.result

    def _on_message(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        kind = content.get("type")
        config = str(content.get("config", ""))
        if kind == "check":
            self.status = {"busy": False, **self.state.describe(config)}
        elif kind == "run":
            self.run(config, str(content.get("prompt", "")), int(content.get("max_new_tokens", 64)))

    def run(self, config: str, prompt: str, max_new_tokens: int = 64) -> None:
        """What the Run button does (callable from Python too)."""
        described = self.state.describe(config)
        self.status = {"busy": True, **described}
        error = None
        try:
            self.state.run(config, prompt, max_new_tokens)
            self.runs = list(self.state.runs)
        except LabError as err:
            error = str(err)
        except Exception as err:  # noqa: BLE001 - shown on the panel, which must not hang
            error = f"the run failed: {one_line(err)}"
        finally:
            # Whatever happened (Ctrl-C included), the button leaves "Running…".
            self.status = {**described, "busy": False, **({"error": error} if error else {})}
        if error is None:
            s = self.state
            self.payload = {
                **self.payload,
                "config": s.config,
                "prompt": s.prompt,
                "max_new_tokens": s.max_new_tokens,
            }
            # The saved copy (what a saved notebook and its report show) follows the runs.
            self.refresh_offline_copy()


AccelPanel.register(AccelPanelState)
