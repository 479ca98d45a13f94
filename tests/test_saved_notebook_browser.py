"""A notebook saved from JupyterLab reopens with its views (issue 21, finding 1).

Run every view in JupyterLab, save with Ctrl+S, close, reopen: with a fresh kernel, with the
widget state saved in the notebook ("save widget state" on) and without it (off, the default),
with no kernel at all, and in Notebook 7. Each time every view shows, as its offline copy or
live again; no "Error displaying widget" is left on the page. Screenshots: build/screenshots/.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import nbformat
import pytest

from tests import browser
from tests.browser import reopen_notebook, run_cells_in_jupyterlab, save_with_ctrl_s

SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
REPEATS = "one two three four five six one two three four five six"

CELLS = [
    "%load_ext llmlab\n%llm load tiny:llama",
    '%llm next "The cat sat on the"',
    '%llm attention "The cat sat on the mat."',
    '%llm lens "The cat sat on the mat."',
    "%llm accel --max-new-tokens 8",
    f'%llm generate --raw --max-new-tokens 16 --accel spec=prompt-lookup --show-drafts "{REPEATS}"',
    "%%llm tradeoff --configs baseline,kv=off --axes cost,top1 --max-new-tokens 4 --warmup 0 "
    "--repeats 3 --wait\nName a colour.",
    '%llm load tiny:mixtral\n%llm moe "The cat sat on the mat."',
]
#: Each view's root: one per view cell, live or in its offline copy.
VIEWS = {
    "next-token": ".llmlab-nt",
    "attention": ".llmlab-att",
    "lens": ".llmlab-lens",
    "accel": ".llmlab-ac",
    "drafts": ".llmlab-sd",
    "moe": ".llmlab-moe",
}
WIDGETS_SETTINGS = ".settings/@jupyter-widgets/jupyterlab-manager/plugin.jupyterlab-settings"

# What the reader sees: each view's root drawn (a live view, or an offline copy in its shadow
# root, which Playwright's CSS selectors pierce), and the tradeoff chart.
SEEN_JS = """() => {
  const visible = (e) => !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length);
  const roots = (sel) => {
    const out = [...document.querySelectorAll(sel)];
    for (const host of document.querySelectorAll('.llmlab-static-view'))
      if (host.shadowRoot) out.push(...host.shadowRoot.querySelectorAll(sel));
    return out.filter(visible);
  };
  const views = {};
  for (const [name, sel] of Object.entries(VIEWS)) views[name] = roots(sel).length;
  views.tradeoff = [...document.querySelectorAll('.js-plotly-plot')].filter(visible).length;
  const text = [...document.querySelectorAll('.jp-OutputArea-output')]
    .filter(visible).map((e) => e.innerText).join('\\n');
  return {
    views,
    errors: (text.match(/Error displaying widget[^\\n]*/g) || []),
    loading: (text.match(/Loading widget/g) || []).length,
    live: document.querySelectorAll('.llmlab-live').length,
    stale: document.querySelectorAll('.llmlab-stale').length,
    copies_shown: [...document.querySelectorAll('.llmlab-copy')].filter(visible).length,
  };
}""".replace("VIEWS", json.dumps(VIEWS))


def _settled(page, expect_live: bool) -> dict:
    """Wait until every view is drawn (live or as its copy) and nothing still loads."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with contextlib.suppress(PlaywrightTimeout):  # the assertions say what is missing
        page.wait_for_function(
            f"() => {{ const s = ({SEEN_JS})(); return Object.values(s.views)"
            ".every((n) => n >= 1) && s.loading === 0; }",
            timeout=120_000,
        )
    page.wait_for_timeout(1000)
    return page.evaluate(f"({SEEN_JS})()")


def _widget_state(on: bool) -> None:
    path = browser._start_server()["root"] / WIDGETS_SETTINGS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"saveState": on}))


@pytest.mark.slow
@pytest.mark.browser
def test_a_saved_notebook_reopens_with_every_view(tmp_path):
    SHOTS.mkdir(parents=True, exist_ok=True)
    seen: dict = {}
    _widget_state(True)  # the harder case: JupyterLab restores models with no kernel behind

    def run_and_save(page):
        page.wait_for_selector(".llmlab-moe", timeout=120_000)
        seen["live"] = _settled(page, expect_live=True)
        save_with_ctrl_s(page)

    try:
        run_cells_in_jupyterlab(
            CELLS, SHOTS / "saved_live.png", actions=run_and_save, timeout_s=400
        )
        saved = browser.latest_notebook()
        nb = nbformat.read(saved, as_version=4)
        assert "application/vnd.jupyter.widget-state+json" in nb.metadata.get("widgets", {})

        def look(key):
            def action(page):
                seen[key] = _settled(page, expect_live=False)

            return action

        # 1. Fresh kernel, widget state saved in the notebook (models restored, kernel-less).
        reopen_notebook(saved, SHOTS / "saved_reopen_state_on.png", actions=look("state_on"))
        # 2. Fresh kernel, no widget state (the setting off, JupyterLab's default).
        nb.metadata.pop("widgets")
        browser.write_signed(nb, saved)
        reopen_notebook(saved, SHOTS / "saved_reopen_state_off.png", actions=look("state_off"))
        # 3. Notebook 7, fresh kernel.
        reopen_notebook(
            saved, SHOTS / "saved_reopen_notebook7.png", app="notebook", actions=look("nb7")
        )
        # 4. No kernel at all.
        reopen_notebook(
            saved, SHOTS / "saved_reopen_no_kernel.png", kernel=False, actions=look("none")
        )
    finally:
        _widget_state(False)

    live = seen["live"]
    assert all(n == 1 for n in live["views"].values()), live
    assert live["copies_shown"] == 0 and live["live"] == len(VIEWS)  # copies hide beside views
    for key in ("state_on", "state_off", "nb7", "none"):
        after = seen[key]
        assert all(n == 1 for n in after["views"].values()), (key, after)
        assert after["errors"] == [] and after["loading"] == 0, (key, after)
        assert after["live"] == 0, (key, after)  # nothing pretends to be live with no kernel
    assert seen["state_on"]["stale"] == len(VIEWS)  # restored models drew nothing stale
