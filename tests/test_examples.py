"""The quickstart notebook runs end to end on the real default model and exports offline."""

from __future__ import annotations

import re

import pytest

from llmlab.report import export_html
from tests.notebooks import EXAMPLES, execute_notebook, outputs_text


@pytest.mark.slow
def test_quickstart_runs_and_exports(tmp_path):
    nb = execute_notebook(EXAMPLES / "quickstart.ipynb")
    text = outputs_text(nb)
    assert "The capital of France is Paris." in text
    assert "prompt tokens" in text and "decode" in text and "tok/s" in text
    assert "Next token after" in text  # the static fallback of the sampling view
    html = export_html(nb, tmp_path / "quickstart.html").read_text()
    assert "cdnjs" not in html and "unpkg" not in html and "require.min.js" not in html
    assert "The capital of France is Paris." in html and "llmlab-card" in html


@pytest.mark.slow
def test_interventions_notebook_runs_and_exports(tmp_path):
    nb = execute_notebook(EXAMPLES / "interventions.ipynb", timeout=1800)
    text = outputs_text(nb)
    assert re.search(r"0\s+13\s+8\s+0\.59", text)  # the Link ranking: L13H8 first, it → tiger
    assert "270 variants in" in text and "Head importance" in text  # every head scanned
    assert "p(' tiger') with head 13.8 ablated" in text
    assert "PatchingResult(smollm2" in text and "best residual patch" in text
    assert "LensComparison" in text or "Logit lens" in text
    assert "steer=love*1.5" in text
    assert "· experts=-3" in text and "first-choice share per expert" in text
    assert "experts=-3-5" in text and "weight_mb" in text
    html = export_html(nb, tmp_path / "interventions.html").read_text()
    assert "cdnjs" not in html and "unpkg" not in html
    assert "llmlab-int" in html and "Activation patching" in html
