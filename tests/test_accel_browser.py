"""The %llm accel panel in a real JupyterLab: toggles, greyed reasons, Run, side-by-side runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import run_cells_in_jupyterlab

SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"


@pytest.mark.slow
@pytest.mark.browser
def test_accel_panel_runs_twice_side_by_side_in_jupyterlab():
    SHOTS.mkdir(parents=True, exist_ok=True)
    state: dict = {}

    def tour(page):
        flash = page.locator('.llmlab-ac-value[data-value="flash"]')
        state["flash_disabled"] = flash.is_disabled()
        state["flash_title"] = flash.get_attribute("title")
        page.click(".llmlab-ac-run-button")
        page.wait_for_selector(".llmlab-ac-run", timeout=120_000)
        page.click('.llmlab-ac-value[data-value="prompt-lookup"]')
        page.wait_for_function(
            "() => document.querySelector('.llmlab-ac-status').textContent"
            ".includes('spec=prompt-lookup')",
            timeout=30_000,
        )
        page.click(".llmlab-ac-run-button")
        page.wait_for_function(
            "() => document.querySelectorAll('.llmlab-ac-run').length === 2", timeout=120_000
        )
        page.wait_for_timeout(300)
        runs = page.locator(".llmlab-ac-run")
        state["titles"] = [runs.nth(i).locator(".llmlab-ac-label").inner_text() for i in range(2)]
        state["second"] = runs.nth(1).inner_text()
        page.locator(".llmlab-ac").screenshot(path=str(SHOTS / "accel_panel_two_runs.png"))
        page.click('.llmlab-ac-value[data-value="off"] >> nth=0')  # kv=off
        page.click('.llmlab-ac-value[data-value="prompt-lookup"]')
        page.wait_for_selector(".llmlab-ac-error", timeout=30_000)
        state["error"] = page.locator(".llmlab-ac-error").inner_text()

    run_cells_in_jupyterlab(
        [
            "%load_ext llmlab",
            "%llm load default",
            '%llm accel --max-new-tokens 24 --prompt "Summarise in one sentence: The Eiffel '
            "Tower is a wrought-iron lattice tower in Paris. It was built from 1887 to 1889 as "
            "the entrance to the 1889 World's Fair. The Eiffel Tower is 330 metres tall.\"",
        ],
        SHOTS / "accel_panel.png",
        wait_for=".llmlab-ac-run-button",
        actions=tour,
        timeout_s=300,
    )
    assert state["flash_disabled"] and "CUDA" in state["flash_title"]
    assert state["titles"] == ["baseline", "spec=prompt-lookup"]
    assert "same tokens as baseline" in state["second"] and "× baseline" in state["second"]
    assert "acceptance rate" in state["second"] and "tokens / target pass" in state["second"]
    # Each configuration's first run was warmed up first, untimed, and the panel says so.
    assert "warmed up once before this run" in state["second"] and "warm-up s" in state["second"]
    assert "spec needs a KV cache" in state["error"]


@pytest.mark.slow
@pytest.mark.browser
def test_accel_static_html_works_offline(tmp_path, tiny_llama):
    import llmlab.widgets  # noqa: F401  (the offline copy runs the live view's own module)

    from llmlab.accel.panel import AccelPanelState
    from tests.browser import screenshot_offline_html

    SHOTS.mkdir(parents=True, exist_ok=True)
    state = AccelPanelState(lm=tiny_llama, models={"tiny-llama": tiny_llama}, max_new_tokens=12)
    state.run("baseline", "</script><script>window.__pwned = 1</script>", 12)
    state.run("spec=prompt-lookup", "</script><script>window.__pwned = 1</script>", 12)
    # Model text is untrusted: put a script-breaking string where generated text goes.
    state.runs[0]["text"] = "</script><script>window.__pwned = 1</script><b>bold?</b>"
    page = state.save_html(tmp_path / "accel.html")
    seen: dict = {}

    def look(p):
        seen["pwned"] = p.evaluate("() => window.__pwned === 1")
        seen["text"] = p.inner_text(".llmlab-ac")  # inside the view's shadow root
        p.click(".llmlab-ac-run-button")  # a new run needs the model: the copy says so in place
        p.wait_for_selector(".llmlab-static-note", state="visible")
        seen["note"] = p.inner_text(".llmlab-static-note")

    shot = SHOTS / "accel_static.png"
    screenshot_offline_html(page, shot, wait_for=".llmlab-ac-run", actions=look)
    assert seen["pwned"] is False
    assert "spec=prompt-lookup" in seen["text"] and "acceptance rate" in seen["text"]
    assert "<b>bold?</b>" in seen["text"]  # shown as text, not markup
    assert "need the running kernel" in seen["note"]
