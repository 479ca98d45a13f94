"""The tradeoff views in a real browser: the exported page offline, and the live widget in
JupyterLab. Screenshots land in build/screenshots/tradeoff-*.png; look at them after a change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import run_cells_in_jupyterlab, screenshot_offline_html

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
POINT = ".scatterlayer .trace .points path.point"


def _hover_and_click_first_point(page, results: dict) -> None:
    box = page.locator(POINT).nth(1).bounding_box()  # not the baseline: another configuration
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.wait_for_selector(".hoverlayer .hovertext", timeout=10_000)
    results["hover"] = page.locator(".hoverlayer .hovertext").first.text_content()
    page.mouse.click(x, y)
    page.wait_for_timeout(500)
    page.mouse.move(x, y)  # keep the tooltip in the screenshot
    page.wait_for_selector(".hoverlayer .hovertext", timeout=10_000)


def test_exported_page_is_interactive_offline(tmp_path):
    from llmlab.models.registry import load_model
    from llmlab.tradeoff import run_sweep

    lm = load_model("tiny:llama")
    sweep = run_sweep(
        lm,
        "baseline,kv=off,bf16,spec=prompt-lookup",
        ["hello", "</script><b>x</b>"],
        max_new_tokens=4,
        warmup=0,
    )
    page_path = sweep.save_html(tmp_path / "tradeoffs.html")
    results: dict = {}

    def actions(page):
        _hover_and_click_first_point(page, results)
        results["panel"] = page.locator("[id$='-texts']").inner_text()

    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = screenshot_offline_html(
        page_path, SHOTS / "tradeoff-offline.png", wait_for=POINT, actions=actions
    )
    assert shot.exists()
    assert "TPOT" in results["hover"] and "measured" in results["hover"]
    assert "reference (baseline)" in results["panel"] and "</script><b>x</b>" in results["panel"]


def test_live_view_in_jupyterlab():
    cells = [
        "%load_ext llmlab\n%llm load tiny:llama",
        "sweep = %llm tradeoff --configs baseline,kv=off,bf16,spec=prompt-lookup "
        "--max-new-tokens 4 --warmup 0",
        "sweep.wait(); print(sweep.summary())",
    ]
    results: dict = {}

    def actions(page):
        page.wait_for_function(
            "() => document.body.innerText.includes('baseline (again)')", timeout=120_000
        )
        page.wait_for_timeout(1000)
        _hover_and_click_first_point(page, results)
        page.wait_for_function(
            "() => document.body.innerText.includes('reference (baseline)')", timeout=30_000
        )
        results["stop_disabled"] = page.locator(".llmlab-tradeoff button").first.is_disabled()

    shot = run_cells_in_jupyterlab(
        cells, SHOTS / "tradeoff-live.png", wait_for=".llmlab-tradeoff " + POINT, actions=actions
    )
    assert shot.exists()
    assert "TPOT" in results["hover"]
    assert results["stop_disabled"]  # the sweep is over
