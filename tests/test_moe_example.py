"""examples/moe_routing.ipynb runs offline end to end."""

from __future__ import annotations

from tests.notebooks import EXAMPLES, execute_notebook, outputs_text


def test_moe_routing_notebook_runs(tmp_path):
    nb = execute_notebook(EXAMPLES / "moe_routing.ipynb", timeout=600)
    text = outputs_text(nb)
    assert "MoE routing" in text and "untrained" in text
    assert "cv_top1" in text  # the load table
    assert "Token × layer map" in text  # the static fallback of the view
    (EXAMPLES / "moe_routing.html").unlink(missing_ok=True)
