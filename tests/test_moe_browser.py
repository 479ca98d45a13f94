"""The MoE routing view in a real JupyterLab, and its static HTML opened offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import run_cells_in_jupyterlab, screenshot_offline_html

SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
EVIL = "</script><script>window.__pwned = 1</script>"


@pytest.mark.slow
@pytest.mark.browser
def test_moe_view_renders_every_tab_in_jupyterlab():
    state: dict = {}

    def tour(page):
        state["tokens"] = page.locator(".llmlab-moe-tok").count()
        page.hover(".llmlab-moe-tok >> nth=4")
        state["tip"] = page.locator(".llmlab-moe-tip").inner_text()
        page.screenshot(path=str(SHOTS / "moe_map_hover.png"), full_page=True)
        for i, name in enumerate(["load", "coactivation", "runs", "inputs"], start=1):
            page.click(f".llmlab-moe-tab >> nth={i}")
            page.wait_for_timeout(200)
            state[name] = page.locator(".llmlab-moe-body svg rect").count()
            page.screenshot(path=str(SHOTS / f"moe_{name}.png"), full_page=True)
        state["pwned"] = page.evaluate("() => window.__pwned === 1")

    run_cells_in_jupyterlab(
        [
            "%load_ext llmlab",
            "%llm load tiny:olmoe",
            "from llmlab import default_lab\nfrom llmlab.moe import capture_routing\n"
            "r = capture_routing(default_lab().model(), {'code': 'def fib(n): return n', "
            f"'evil': {EVIL!r}}}, generate=0)\nr",
        ],
        SHOTS / "moe_view.png",
        wait_for=".llmlab-moe-tok",
        actions=tour,
    )
    assert state["tokens"] == len("def fib(n): return n") + len(EVIL)
    assert "position 4" in state["tip"] and "L0" in state["tip"]
    assert all(state[name] > 0 for name in ["load", "coactivation", "runs", "inputs"])
    assert state["pwned"] is False


@pytest.mark.slow
@pytest.mark.browser
def test_moe_static_html_works_offline(tmp_path):
    import llmlab.widgets  # noqa: F401  (the offline copy runs the live view's own module)

    from llmlab.models.registry import load_model
    from llmlab.moe import capture_routing

    routing = capture_routing(
        load_model("tiny:deepseek_v3"), {"code": "x = [i * i for i in range(9)]", "evil": EVIL}
    )
    page = routing.save_html(tmp_path / "moe.html")
    state = {}

    def check(p):
        state["pwned"] = p.evaluate("() => window.__pwned === 1")
        state["strips"] = p.locator(".llmlab-moe-strip").count()

    screenshot_offline_html(
        page, SHOTS / "moe_static_offline.png", wait_for=".llmlab-moe-strip", actions=check
    )
    assert state["strips"] == routing.n_tokens and state["pwned"] is False
