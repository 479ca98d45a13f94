"""The attention views in a real browser: JupyterLab live, and the static export offline.

Screenshots land in build/screenshots/attention-*.png; look at them after a change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import run_cells_in_jupyterlab, screenshot_offline_html

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
TEXT = "The animal didn't cross the street because it was too tired."
EVIL = "</script><script>alert(1)"

CELLS = [
    "%load_ext llmlab\n%llm load default",
    f'att = %llm attention --layer 3 "{TEXT}"',
    # An untrusted token must stay text: it is shown, and no script runs.
    f"att.tokens[2] = {EVIL!r}\natt._shown_live = False\natt",
    f'diff = %llm attention --compare int8 "{TEXT}"',
    # About 1,000 tokens: compact payload, scrolling head view, full heads fetched on demand.
    "from llmlab import default_lab\nfrom llmlab.attention import attention\n"
    f"long = attention(default_lab().model(), {TEXT + ' '!r} * 80)\nlong",
]


def test_views_render_in_jupyterlab():
    dialogs: list[str] = []
    shots: dict[str, Path] = {}

    def shoot(locator, name):
        locator.scroll_into_view_if_needed()
        shots[name] = SHOTS / f"attention-{name}.png"
        locator.screenshot(path=str(shots[name]))

    def actions(page):
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        views = page.locator(".llmlab-att")
        assert views.count() == 4
        first, evil, diff, long = (views.nth(i) for i in range(4))
        # Head view: focus the token "it" (index 8 in SmolLM2's tokens of TEXT).
        first.locator(".llmlab-att-left .llmlab-att-tok").nth(8).click()
        page.wait_for_timeout(800)  # the exact row arrives from the kernel
        first.locator(".llmlab-att-right .llmlab-att-tok").nth(2).hover()
        page.wait_for_timeout(300)
        assert first.locator(".llmlab-att-tip").is_visible()
        shoot(first, "head-view")
        # Grid: enlarge one head; the full-resolution head is fetched on demand.
        first.locator(".llmlab-att-tab", has_text="Grid").click()
        first.locator(".llmlab-att-thumb").nth(3 * 9 + 4).click()
        page.wait_for_timeout(1500)
        first.locator(".llmlab-att-bigcanvas").hover()
        shoot(first, "grid")
        first.locator(".llmlab-att-tab", has_text="Heads table").click()
        first.locator(".llmlab-att-table th", has_text="previous-token").click()
        shoot(first, "table")
        # The escaped token shows as text in the head view.
        tokens = evil.locator(".llmlab-att-left .llmlab-att-tok").all_inner_texts()
        assert EVIL in tokens
        # Diff view opens first when a variant is compared.
        page.wait_for_timeout(1500)
        shoot(diff, "diff")
        # Switch the other tabs to variant B: its lines come from the kernel.
        diff.locator(".llmlab-att-variant").select_option("b")
        diff.locator(".llmlab-att-tab", has_text="Head view").click()
        diff.locator(".llmlab-att-chip", has_text="h0").click()
        page.wait_for_timeout(1000)
        assert "could not" not in diff.locator(".llmlab-att-status").inner_text()
        shoot(diff, "diff-variant-b-head-view")
        # The long input: scroll the head view to the middle and focus a token there.
        assert long.locator(".llmlab-att-left .llmlab-att-tok").count() >= 1024
        long.locator(".llmlab-att-scroll").evaluate("e => { e.scrollTop = 9000; }")
        long.locator(".llmlab-att-left .llmlab-att-tok").nth(520).click()
        page.wait_for_timeout(800)
        shoot(long, "long-head-view")
        long.locator(".llmlab-att-tab", has_text="Grid").click()
        long.locator(".llmlab-att-thumb").nth(9 * 9 + 1).click()
        page.wait_for_timeout(4000)  # a full 1,000 × 1,000 head comes from the kernel
        shoot(long, "long-grid")

    run_cells_in_jupyterlab(
        CELLS,
        SHOTS / "attention-notebook.png",
        wait_for=".llmlab-att-left .llmlab-att-tok",
        actions=actions,
        timeout_s=420,
    )
    assert not dialogs, f"a token ran as script: {dialogs}"
    for path in shots.values():
        assert path.stat().st_size > 5_000


def test_static_export_opens_offline(tmp_path, default_lm):
    import llmlab.widgets  # noqa: F401  (the offline copy runs the live view's own module)

    from llmlab.attention import compare

    diff = compare(default_lm, "int8", TEXT, layer=3)
    diff.a.tokens[2] = EVIL
    page = diff.save_html(tmp_path / "attention.html")
    assert "<script>alert" not in page.read_text()
    screenshot_offline_html(page, SHOTS / "attention-static.png", wait_for=".llmlab-att-tab")
