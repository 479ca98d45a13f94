"""The report's CSS does not reach inside the views (issue 21, finding 8).

A report page is nbconvert's JupyterLab template: its table rules (cells right-aligned, odd rows
striped grey) reached the offline views, so lens cells and accel labels sat right-aligned and
token columns grey. Each offline view now renders in a shadow root holding only its own style.
Screenshots: build/screenshots/report_css_*.png.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from llmlab.report import execute, export_html
from tests.browser import screenshot_offline_html

SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"

CELLS = [
    "%load_ext llmlab\n%llm load tiny:llama",
    '%llm lens "The cat sat on the mat. The cat sat on the mat."',
    "state = %llm accel --max-new-tokens 6",
    "from llmlab.widgets.accel import AccelPanel\n"
    "panel = AccelPanel(state)\npanel.show()\n"
    'panel.run("baseline", state.prompt, 6)',
]

# Computed styles inside the views, wherever they are (page or shadow root).
STYLES_JS = """() => {
  const all = (sel) => {
    const out = [...document.querySelectorAll(sel)];
    for (const host of document.querySelectorAll('.llmlab-static-view'))
      if (host.shadowRoot) out.push(...host.shadowRoot.querySelectorAll(sel));
    return out;
  };
  const style = (sel, prop) => all(sel).map((e) => getComputedStyle(e)[prop]);
  const scroll = all('.llmlab-lens-scroll')[0];
  return {
    cells: style('.llmlab-lens-cell', 'textAlign'),
    rows: style('.llmlab-lens-grid tbody tr', 'backgroundColor'),
    token_heads: style('.llmlab-lens-grid thead th', 'textAlign'),
    accel_labels: style('.llmlab-ac-stats th', 'textAlign'),
    accel_cells: style('.llmlab-ac-stats td', 'textAlign'),
    lens_scroll_top: scroll ? scroll.scrollTop : null,
  };
}"""


@pytest.mark.slow
@pytest.mark.browser
def test_report_css_does_not_reach_the_views(tmp_path):
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "nb.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    html = export_html(execute(path, timeout=600), tmp_path / "report.html")
    seen: dict = {}

    def look(page):
        page.wait_for_selector(".llmlab-lens-cell", timeout=30_000)
        page.wait_for_selector(".llmlab-ac-stats th", timeout=30_000)
        page.wait_for_timeout(500)
        seen.update(page.evaluate(STYLES_JS))
        page.locator(".llmlab-lens").first.screenshot(path=str(SHOTS / "report_css_lens.png"))
        page.locator(".llmlab-ac").last.screenshot(path=str(SHOTS / "report_css_accel.png"))

    screenshot_offline_html(html, SHOTS / "report_css_page.png", actions=look)
    assert seen["cells"] and seen["token_heads"]
    assert "right" not in seen["cells"] + seen["accel_labels"] + seen["token_heads"]
    assert seen["accel_labels"] and set(seen["accel_labels"]) <= {"left", "start"}
    grey = [c for c in seen["rows"] if c not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")]
    assert seen["rows"] and not grey, grey  # no striped rows behind the tokens
    assert seen["lens_scroll_top"] == 0  # opens on the first layers, not scrolled down
