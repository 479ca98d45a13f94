"""examples/tradeoffs.ipynb runs headless on the default model and shows the live plot."""

from __future__ import annotations

import pytest

from tests.notebooks import EXAMPLES, execute_notebook, outputs_text


@pytest.mark.slow
def test_tradeoffs_notebook_runs():
    nb = execute_notebook(EXAMPLES / "tradeoffs.ipynb", timeout=900)
    text = outputs_text(nb)
    widget_outputs = [
        out
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in out.get("data", {})
    ]
    assert len(widget_outputs) >= 2  # the live sweep and the re-plot
    assert "Sweep(smollm2 on cpu" in text and "configurations ok" in text
    assert "output-preserving" in text and "approximating" in text
    assert "SweepComparison" in text or "Sweep comparison" in text
