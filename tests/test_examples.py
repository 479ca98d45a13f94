"""The quickstart notebook runs end to end on the real default model and exports offline."""

from __future__ import annotations

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
