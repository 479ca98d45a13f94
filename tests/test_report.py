"""Offline reports: executed notebooks export to one self-contained HTML file."""

from __future__ import annotations

import nbformat
import pytest

from llmlab.report import execute, export_html
from tests.browser import screenshot_offline_html


def _notebook(tmp_path, cells):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def test_widgets_export_as_their_static_fallback(tmp_path):
    path = _notebook(
        tmp_path,
        ["%load_ext llmlab", "%llm load tiny:llama", '%llm next "</script><script>alert(1)"'],
    )
    nb = execute(path, timeout=300)
    mimes = nb.cells[2].outputs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" in mimes and "text/html" in mimes
    html = export_html(nb, tmp_path / "nb.html").read_text()
    assert "Next token after" in html
    assert "<script>alert(1)" not in html


@pytest.mark.slow
@pytest.mark.browser
def test_report_opens_offline_in_chromium(tmp_path):
    path = _notebook(tmp_path, ["%load_ext llmlab", "%llm load tiny:llama", '%llm next "hello"'])
    html = export_html(execute(path, timeout=300), tmp_path / "nb.html")
    png = screenshot_offline_html(html, tmp_path / "report.png", wait_for=".llmlab-card")
    assert png.stat().st_size > 10_000
