"""A live view in JupyterLab shows at once; its offline copy joins the same output later.

Screenshot: build/screenshots/offline-copy-after-display.png.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import run_cells_in_jupyterlab

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
TEXT = "The animal didn't cross the street because it was too tired. "

# Counts each attention view the page creates, and when (ms since the cell was run).
OBSERVE = """() => {
  window.__views = [];
  const t0 = performance.now();
  new MutationObserver(records => {
    for (const r of records) for (const n of r.addedNodes)
      if (n.nodeType === 1 && (n.matches('.llmlab-att') || n.querySelector('.llmlab-att')))
        window.__views.push(Math.round(performance.now() - t0));
  }).observe(document.body, {childList: true, subtree: true});
}"""
OUTPUTS = """() => {
  const cells = window.jupyterapp.shell.currentWidget.content.widgets;
  const outs = cells[cells.length - 1].model.outputs;
  return [...Array(outs.length).keys()].map(i => Object.keys(outs.get(i).data));
}"""


def test_view_shows_before_its_offline_copy_and_keeps_one_output():
    seen: dict = {}

    def actions(page):
        # Run the view's cell again, watching the page: the view appears, the copy follows.
        page.evaluate(OBSERVE)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-cell')")
        page.wait_for_function("() => window.__views.length > 0", timeout=120_000)
        page.wait_for_function(
            f"() => ({OUTPUTS})().every(m => m.includes('text/html'))", timeout=300_000
        )
        page.wait_for_timeout(1500)
        seen["views"] = page.evaluate("window.__views")
        seen["outputs"] = page.evaluate(OUTPUTS)
        seen["shown"] = page.locator(".jp-Cell:last-child .llmlab-att").count()

    run_cells_in_jupyterlab(
        [
            "%load_ext llmlab\n%llm load default",
            f"from llmlab import default_lab\nfrom llmlab.attention import attention\n"
            f"r = attention(default_lab().model(), {TEXT!r} * 60)",
            "r",
        ],
        SHOTS / "offline-copy-after-display.png",
        wait_for=".llmlab-att",
        actions=actions,
    )
    print(seen)
    # One output holding the live view and, once built, its offline copy; one view on the page.
    assert len(seen["outputs"]) == 1 and seen["shown"] == 1
    assert "application/vnd.jupyter.widget-view+json" in seen["outputs"][0]
