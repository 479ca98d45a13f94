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
        # One chosen layer across tabs: picked on the map, it is Load's; picked on Load, it is
        # the map's (when the map shows one layer). The load chart names its experts.
        map_pick, layer_pick = (p.locator("select.llmlab-moe-layer").nth(i) for i in (0, 1))
        values = layer_pick.locator("option").evaluate_all("os => os.map((o) => o.value)")
        first = next(v for v in values if v != layer_pick.input_value())
        map_pick.select_option(first)
        p.click(".llmlab-moe-tab >> text=Load")
        state["from_map"] = (first, layer_pick.input_value())
        state["load_text"] = p.inner_text(".llmlab-moe-body")
        second = next(v for v in values if v != first)
        layer_pick.select_option(second)
        p.click(".llmlab-moe-tab >> text=Co-activation")
        p.click(".llmlab-moe-tab >> text=Token map")
        state["to_map"] = (second, map_pick.input_value())

    screenshot_offline_html(
        page, SHOTS / "moe_static_offline.png", wait_for=".llmlab-moe-strip", actions=check
    )
    assert state["strips"] == routing.n_tokens and state["pwned"] is False
    assert state["from_map"][0] == state["from_map"][1]
    assert state["to_map"][0] == state["to_map"][1]
    assert all(f"\n{e}\n" in state["load_text"] for e in (0, routing.n_experts - 1))


@pytest.mark.slow
@pytest.mark.browser
def test_trained_demo_views_and_live_training_in_jupyterlab():
    """The trained demo MoE's routing (specialisation tab), and a live training run stopped
    from its Stop button, in JupyterLab."""
    state: dict = {}

    def tour(page):
        page.click(".llmlab-moe-tab >> text=Specialisation")
        page.wait_for_timeout(300)
        state["spec_rows"] = page.locator(".llmlab-moe-body table tr").count()
        state["spec_text"] = page.locator(".llmlab-moe-body").inner_text()
        page.locator(".llmlab-moe").first.screenshot(
            path=str(SHOTS / "moe_demo_specialisation.png")
        )
        page.click(".llmlab-moe-tab >> text=Across inputs")
        page.wait_for_timeout(200)
        page.locator(".llmlab-moe").first.screenshot(path=str(SHOTS / "moe_demo_inputs.png"))
        # The live run: wait for a few snapshots, then press Stop.
        page.wait_for_function(
            "() => { const s = document.querySelector('.llmlab-moet-status');"
            " return s && /step ([2-9]\\d|1\\d)\\//.test(s.textContent); }",
            timeout=240_000,
        )
        page.click(".llmlab-moet-stop")
        page.wait_for_function(
            "() => /stopped|done/.test(document.querySelector('.llmlab-moet-status').textContent)",
            timeout=120_000,
        )
        state["status"] = page.locator(".llmlab-moet-status").inner_text()
        state["bands"] = page.locator(".llmlab-moet-band").count()
        page.locator(".llmlab-moet").screenshot(path=str(SHOTS / "moe_training_live.png"))

    run_cells_in_jupyterlab(
        [
            "%load_ext llmlab\n%llm load moe-demo",
            "from llmlab import default_lab\nfrom llmlab.moe import capture_routing\n"
            "from llmlab.moe.demo import PROBE_TEXTS\n"
            "r = capture_routing(default_lab().model(), PROBE_TEXTS)\nr",
            "run = %llm moe-train --steps 200\nrun",
        ],
        SHOTS / "moe_demo_lab.png",
        wait_for=".llmlab-moet-loss",
        actions=tour,
        timeout_s=400,
    )
    assert state["spec_rows"] == 5 and "untrained" in state["spec_text"]
    assert "stopped" in state["status"]
    assert state["bands"] > 0


@pytest.mark.slow
@pytest.mark.browser
def test_trained_demo_views_offline(tmp_path):
    import llmlab.widgets  # noqa: F401  (as in a notebook: the copy runs the live view's own code)

    from llmlab.models.registry import load_model
    from llmlab.moe import capture_routing
    from llmlab.moe.demo import PROBE_TEXTS, DemoRecipe
    from llmlab.moe.training import train_moe_demo

    routing = capture_routing(load_model("moe-demo"), PROBE_TEXTS)
    page = routing.save_html(tmp_path / "moe_demo.html")
    run = train_moe_demo(DemoRecipe().quick(6), progress=False)
    run_page = run.save_html(tmp_path / "moe_train.html")
    state = {}

    def check(p):
        state["strips"] = p.locator(".llmlab-moe-tok").count()
        state["spec"] = "Specialisation" in p.content()

    screenshot_offline_html(
        page, SHOTS / "moe_demo_offline.png", wait_for=".llmlab-moe-map", actions=check
    )
    screenshot_offline_html(run_page, SHOTS / "moe_training_offline.png", wait_for="svg")
    assert state["strips"] == routing.n_tokens and state["spec"]
