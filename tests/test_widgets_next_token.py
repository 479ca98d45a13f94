"""The next-token view in a real JupyterLab: sliders cut the distribution, text stays inert."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import run_cells_in_jupyterlab

SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"


@pytest.mark.slow
@pytest.mark.browser
def test_sliders_cut_the_distribution_live():
    state: dict = {}

    def drag_top_k(page):
        rows = page.locator(".llmlab-nt-row")
        state["rows"] = rows.count()
        state["cut_before"] = page.locator(".llmlab-nt-cut").count()
        page.eval_on_selector(
            ".llmlab-nt-slider:nth-child(2) input",
            "e => { e.value = 3; e.dispatchEvent(new Event('input')); }",
        )
        state["cut_after"] = page.locator(".llmlab-nt-cut").count()
        state["pwned"] = page.evaluate("() => window.__pwned === 1")

    run_cells_in_jupyterlab(
        [
            "%load_ext llmlab",
            "%llm load tiny:llama",
            '%llm next --show 12 "</script><script>window.__pwned = 1</script>"',
        ],
        SHOTS / "next_token_topk3.png",
        wait_for=".llmlab-nt-row",
        actions=drag_top_k,
    )
    assert state["rows"] == 12
    assert state["cut_before"] == 0
    assert state["cut_after"] == 12 - 3
    assert state["pwned"] is False
