"""Intervention views in a real browser: JupyterLab live, and the offline copies.

Screenshots land in build/screenshots/interventions-*.png; look at them after a change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import run_cells_in_jupyterlab, screenshot_offline_html

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"

CELLS = [
    "%load_ext llmlab\n%llm load tiny:qwen3_moe",
    'scan = %llm heads --answer o "hello there world"',
    'p = %llm patch --clean "hello there" --corrupted "jello where" --answer o --wrong x',
    'att = %llm attention --link 5,1 "hello there"',
]


def test_intervention_views_in_jupyterlab():
    shots: list[Path] = []

    def shoot(locator, name):
        locator.scroll_into_view_if_needed()
        shots.append(SHOTS / f"interventions-{name}.png")
        locator.screenshot(path=str(shots[-1]))

    def actions(page):
        views = page.locator(".llmlab-int")
        assert views.count() == 2
        heads, patch = views.nth(0), views.nth(1)
        # 4 layers × 4 heads, every cell a number; the strongest head's pattern opens first.
        assert heads.locator(".llmlab-int-cell:not(.llmlab-int-none)").count() == 16
        heads.locator(".llmlab-int-att").wait_for(timeout=30_000)
        heads.locator(".llmlab-int-heat").first.locator("tr").nth(3).locator("td").nth(2).click()
        heads.locator(".llmlab-int-side .llmlab-int-title").filter(
            has_text="layer 2, head 2"
        ).wait_for(timeout=30_000)
        heads.locator(".llmlab-int-att").wait_for(timeout=30_000)
        # Sorting the table by layer puts layer 0 first.
        heads.locator(".llmlab-int-sort").first.click()
        first_row = heads.locator(".llmlab-int-trow").first.locator("td").first
        assert first_row.inner_text().strip() in ("0", "3")
        shoot(heads, "heads")
        # Patching: three heatmaps (residual stream, heads, MoE layers) behind tabs.
        tabs = patch.locator(".llmlab-int-tab")
        assert tabs.all_inner_texts() == ["Residual stream", "Head outputs", "MoE layers"]
        patch.locator(".llmlab-int-cell").first.click()
        assert "restored" in patch.locator(".llmlab-int-detail").inner_text()
        shoot(patch, "patching")
        tabs.nth(2).click()
        shoot(patch, "patching-moe")
        # The attention view opens on its Link tab: heads ranked for token 5 → token 1.
        link = page.locator(".llmlab-att").first
        rows = link.locator(".llmlab-att-linkrow")
        rows.first.wait_for(timeout=30_000)
        assert rows.count() == 16
        shoot(link, "link")
        rows.first.click()  # one click to that head's pattern in the head view
        assert link.locator(".llmlab-att-tab.llmlab-att-active").inner_text() == "Head view"

    run_cells_in_jupyterlab(CELLS, SHOTS / "interventions-lab.png", wait_for=".llmlab-int",
                            actions=actions)  # fmt: skip
    assert all(s.exists() for s in shots)


def test_intervention_views_offline(tmp_path):
    import llmlab.widgets  # noqa: F401  (registers the views' offline copies)

    from llmlab import Lab

    lab = Lab()
    lab.load("tiny:llama")
    scan = lab.head_importance("hello there world", answer="o")
    patched = lab.patching("hello there", "jello where", "o", "x")
    att = scan.attention.set_link(9, 2)
    page = tmp_path / "report.html"
    body = "".join(r.static_html() for r in (scan, patched, att))
    page.write_text(f'<!doctype html><meta charset="utf-8"><body>{body}</body>', "utf-8")

    def actions(p):
        heads = p.locator(".llmlab-int").first
        heads.locator(".llmlab-int-att").wait_for(timeout=10_000)  # a prepared pattern
        link = p.locator(".llmlab-att").first
        link.locator(".llmlab-att-linkrow").first.wait_for(timeout=10_000)
        assert link.locator(".llmlab-att-linkrow").count() == 16
        link.locator(".llmlab-att-linkpick").nth(1).select_option("0")
        link.locator(".llmlab-att-bigtitle").filter(has_text="(0)").wait_for(timeout=10_000)

    screenshot_offline_html(
        page, SHOTS / "interventions-offline.png", wait_for=".llmlab-int", actions=actions
    )
