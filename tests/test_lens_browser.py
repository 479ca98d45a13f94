"""The logit-lens view in a real browser: JupyterLab live, and the offline export.

Screenshots land in build/screenshots/lens-*.png; look at them after a change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import run_cells_in_jupyterlab, screenshot_offline_html

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
TEXT = "The Eiffel Tower is in the city of Paris, and the Colosseum is in the city of"
EVIL = "</script><script>alert(1)"

CELLS = [
    "%load_ext llmlab\n%llm load default",
    f'r = %llm lens "{TEXT}"',
    # An untrusted token must stay text: it is shown, and no script runs.
    f"r.tokens[2] = {EVIL!r}\nr._shown_live = False\nr",
    f'diff = %llm lens --compare int8 "{TEXT}"',
]


def test_lens_renders_in_jupyterlab():
    dialogs: list[str] = []
    shots: list[Path] = []

    def shoot(locator, name):
        locator.scroll_into_view_if_needed()
        shots.append(SHOTS / f"lens-{name}.png")
        locator.screenshot(path=str(shots[-1]))

    def actions(page):
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        views = page.locator(".llmlab-lens")
        assert views.count() == 3
        first, evil, diff = (views.nth(i) for i in range(3))
        # One row per layer (+ embeddings), one column per token; the output row says " Rome".
        assert first.locator("tbody tr").count() == 31
        top_row = first.locator("tbody tr").first.locator(".llmlab-lens-cell")
        assert top_row.last.inner_text().strip() == "Rome"
        top_row.last.hover()
        assert "Rome" in first.locator(".llmlab-lens-detail").inner_text()
        shoot(first, "probability")
        first.locator("select").select_option("rank")
        first.locator("tbody tr").nth(6).locator(".llmlab-lens-cell").last.click()
        assert "final prediction" in first.locator(".llmlab-lens-detail").inner_text()
        shoot(first, "rank")
        # The escaped token shows as text in the column headers.
        assert any(EVIL[:7] in t for t in evil.locator("thead th").all_inner_texts())
        # A comparison: where int8 parts from float32, layer by layer.
        diff.locator("select").first.select_option("diff")
        assert "KL(A‖B)" in diff.locator("thead").inner_text()
        shoot(diff, "diff")

    run_cells_in_jupyterlab(
        CELLS,
        SHOTS / "lens-notebook.png",
        wait_for=".llmlab-lens-cell",
        actions=actions,
        timeout_s=420,
    )
    assert not dialogs, f"a token ran as script: {dialogs}"
    for path in shots:
        assert path.stat().st_size > 5_000


def test_offline_copy_and_static_html(tmp_path, default_lm):
    import llmlab.widgets  # noqa: F401  (registers the view's offline copy, as in a notebook)

    from llmlab.lens import compare

    diff = compare(default_lm, "int8", TEXT)
    diff.a.tokens[2] = EVIL
    page = diff.save_html(tmp_path / "lens.html")
    assert "<script>alert" not in page.read_text()

    def actions(p):
        p.locator(".llmlab-lens select").first.select_option("diff")
        p.locator(".llmlab-lens-cell").last.hover()

    screenshot_offline_html(page, SHOTS / "lens-offline.png", wait_for=".llmlab-lens-cell",
                            actions=actions)  # fmt: skip
    # The no-script copy (viewers that run no script) has the grid and the per-layer table.
    static = tmp_path / "lens-static.html"
    static.write_text(f"<html><body>{diff.to_html()}</body></html>", encoding="utf-8")
    screenshot_offline_html(static, SHOTS / "lens-static.png")
    assert "top-1 agreement" in static.read_text() and "&lt;/script&gt;" in static.read_text()
