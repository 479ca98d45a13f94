"""Speculative decoding made visible, live in JupyterLab: --show-drafts and the accel panel."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import run_cells_in_jupyterlab

SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
REPEATS = "one two three four five six one two three four five six one two three"


@pytest.mark.slow
@pytest.mark.browser
def test_drafts_view_and_panel_drafts_in_jupyterlab():
    SHOTS.mkdir(parents=True, exist_ok=True)
    seen: dict = {}

    def tour(page):
        view = page.locator(".llmlab-sd").first
        seen["steps"] = view.locator(".llmlab-sd-step").count()
        seen["rejected_shown"] = view.locator(".llmlab-sd-rej").first.is_visible()
        view.locator("input[type=checkbox]").uncheck()
        rejected = view.locator(".llmlab-sd-text .llmlab-sd-rej").first
        seen["rejected_hidden"] = not rejected.is_visible()
        seen["bars"] = view.locator(".llmlab-sd-bar").count()
        view.screenshot(path=str(SHOTS / "drafts_view_live.png"))
        # The panel draws a speculative run's drafts with the same module.
        page.click('.llmlab-ac-value[data-value="prompt-lookup"]')
        page.click(".llmlab-ac-run-button")
        page.wait_for_selector(".llmlab-ac-drafts summary", timeout=120_000)
        page.click(".llmlab-ac-drafts summary")
        page.wait_for_selector(".llmlab-ac-drafts .llmlab-sd-step", timeout=30_000)
        seen["panel_steps"] = page.locator(".llmlab-ac-drafts .llmlab-sd-step").count()
        page.locator(".llmlab-ac").screenshot(path=str(SHOTS / "drafts_accel_panel_live.png"))

    run_cells_in_jupyterlab(
        [
            "%load_ext llmlab",
            "%llm load tiny:llama",
            "%llm generate --raw --max-new-tokens 24 --accel spec=prompt-lookup --show-drafts "
            f'"{REPEATS}"',
            f'%llm accel --max-new-tokens 12 --prompt "{REPEATS}"',
        ],
        SHOTS / "drafts_live.png",
        wait_for=".llmlab-sd-step",
        actions=tour,
        timeout_s=300,
    )
    assert seen["steps"] > 0 and seen["bars"] > 0 and seen["panel_steps"] > 0
    assert seen["rejected_shown"] and seen["rejected_hidden"]
