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


def test_first_hour_notebook_exports_finished_views_without_echoes(tmp_path):
    """One headless run of what a new user types: no Out[n] echo under a view a magic drew,
    the sweep's static copy is the finished sweep on the requested axes, nothing truncated."""
    path = _notebook(
        tmp_path,
        [
            "%load_ext llmlab",
            "%llm load tiny:llama",
            '%llm generate --max-new-tokens 4 "hello"',
            'r = %llm generate --max-new-tokens 4 "hello"',
            "r",
            "sweep = %llm tradeoff --configs baseline,kv=off --axes cost,top1 "
            "--max-new-tokens 3 --repeats 3 --warmup 0",
            "sweep",
            "%llm accel list",
        ],
    )
    nb = execute(path, timeout=600)
    kinds = [[o["output_type"] for o in c.outputs] for c in nb.cells]
    assert "execute_result" not in kinds[2] + kinds[3] + kinds[5]  # no second Out[n]
    assert kinds[4] == ["display_data"]  # asked for by name: shown in full
    assert "4 new" in nb.cells[4].outputs[0]["data"]["text/plain"]
    assert "(shown above)" not in str(nb)
    (live,) = [o for o in nb.cells[5].outputs if o["output_type"] == "display_data"]
    static = live["data"]["text/html"]
    assert "needs a running kernel" not in static and "Plotly.newPlot" in static
    assert "US$ per 1M output tokens" in static and "top-1 agreement" in static
    again = nb.cells[6].outputs[0]["data"]["text/html"]
    assert "US$ per 1M output tokens" in again and "running" not in again.split("</b>")[1][:20]
    listing = nb.cells[7].outputs[0]["data"]["text/html"]
    assert "..." not in listing and "optimum-quanto or hqq (fp8 is built in)" in listing
    html = export_html(nb, tmp_path / "nb.html").read_text()
    assert "needs a running kernel" not in html and "(shown above)" not in html
