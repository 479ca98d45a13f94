"""examples/moe_routing.ipynb runs offline end to end on the trained demo MoE."""

from __future__ import annotations

import pytest

from tests.notebooks import EXAMPLES, execute_notebook, outputs_text


@pytest.mark.slow
def test_moe_routing_notebook_runs(tmp_path):
    nb = execute_notebook(EXAMPLES / "moe_routing.ipynb", timeout=900)
    text = outputs_text(nb)
    assert "MoE routing" in text and "demonstration MoE" in text
    assert "untrained" in text  # the specialisation figures' comparison column, not a caption
    assert "random weights" not in text
    assert "cv_top1" in text and "mi_class" in text
    assert "Token × layer map" in text and "Specialisation" in text  # the static fallback
    assert "MoE demo training" in text and "step 40/40" in text
    assert "held-out modules" in text
    (EXAMPLES / "moe_routing.html").unlink(missing_ok=True)
