"""A researcher's first hour, as issue 13 tried it: JupyterLab in Chromium on the default model,
saved (Ctrl+S), closed and reopened with a fresh kernel (issue 21), then exported as an offline
report. Screenshots go to build/screenshots/."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest

from llmlab.report import export_html
from tests import browser
from tests.browser import (
    reopen_notebook,
    run_cells_in_jupyterlab,
    save_with_ctrl_s,
    screenshot_offline_html,
)

SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"

CELLS = [
    "%load_ext llmlab\n%llm load",
    '%llm generate "What is the capital of France?"',
    'topic = "a lighthouse keeper"\nr = %llm generate --max-new-tokens 24 --temperature 0.8 '
    '--top-p 0.9 --seed 1 "Tell me a story about {topic}"\nprint(len(r.token_ids), "tokens")',
    "%%llm chat --max-new-tokens 24\nSummarize the previous answer in one line.",
    "%llm accel list",
    "%llm accel --max-new-tokens 12",
    "%%llm tradeoff --configs baseline,kv=off --axes cost,top1 --max-new-tokens 4 --warmup 0\n"
    "Name a colour.\nWhat is 2+2?",
    '%llm attention --compare int8 --generate 4 "The cat sat on the mat."',
]


def _run_accel(page, value: str, runs: int) -> None:
    if value:
        page.click(f'.llmlab-ac-value[data-value="{value}"]')
        page.wait_for_function(
            f"() => document.querySelector('.llmlab-ac-status').textContent.includes('{value}')",
            timeout=30_000,
        )
    page.click(".llmlab-ac-run-button")
    page.wait_for_function(
        f"() => document.querySelectorAll('.llmlab-ac-run').length === {runs}"
        " && !document.querySelector('.llmlab-ac-run-button').disabled",
        timeout=180_000,
    )


@pytest.mark.slow
@pytest.mark.browser
def test_first_hour_in_jupyterlab_and_its_report(tmp_path):
    SHOTS.mkdir(parents=True, exist_ok=True)
    seen: dict = {}

    def tour(page):
        # The sweep runs in the background; its view settles when it ends.
        page.wait_for_function(
            "() => [...document.querySelectorAll('.llmlab-tradeoff button')]"
            ".some(b => b.textContent.includes('Done'))",
            timeout=300_000,
        )
        page.wait_for_timeout(1500)
        seen["echoes"] = page.locator(".jp-OutputArea-executeResult").count()
        _run_accel(page, "", 1)
        _run_accel(page, "prompt-lookup", 2)
        _run_accel(page, "int8", 3)
        runs = page.locator(".llmlab-ac-run")
        titles = runs.locator(".llmlab-ac-run-title")
        seen["titles"] = [titles.nth(i).inner_text() for i in range(3)]
        seen["last_run"] = runs.nth(2).inner_text()
        seen["legend_box"] = page.locator(".llmlab-ac-legend").bounding_box()
        page.locator(".llmlab-ac").screenshot(path=str(SHOTS / "first_hour_accel.png"))
        view = page.locator(".llmlab-tradeoff")
        view.screenshot(path=str(SHOTS / "first_hour_tradeoff.png"))
        seen["table_width"] = page.locator(".llmlab-tradeoff .llmlab-sw-table").first.evaluate(
            "t => t.getBoundingClientRect().width"
        )
        seen["listing"] = page.locator(".llmlab-ac-list").inner_text()
        seen["progress"] = page.locator(".jp-Cell").nth(7).inner_text()
        for i in (1, 2, 3, 4, 7):  # the first cells, the accel list, attention's progress line
            cell = page.locator(".jp-Cell").nth(i)
            cell.scroll_into_view_if_needed()
            cell.screenshot(path=str(SHOTS / f"first_hour_cell{i}.png"))
        save_with_ctrl_s(page)

    run_cells_in_jupyterlab(
        CELLS,
        SHOTS / "first_hour_lab.png",
        wait_for=".llmlab-tradeoff",
        actions=tour,
        timeout_s=600,
    )
    assert seen["echoes"] == 0  # no Out[n] under any view
    assert seen["titles"] == ["baseline", "previous", "this run"]
    assert "× baseline" in seen["last_run"] and "tokens" in seen["last_run"]
    assert seen["legend_box"] and seen["legend_box"]["height"] >= 14  # legible at 100 %
    assert seen["table_width"] <= 900
    assert "optimum-quanto or hqq (fp8 is built in)" in seen["listing"]
    assert "done in" in seen["progress"]

    # The saved notebook holds the finished sweep (updated from the sweep's thread), and its
    # offline report draws it on the requested axes.
    saved = browser.latest_notebook()
    assert time.time() - saved.stat().st_mtime < 600

    # Closed and reopened with a fresh kernel: every view is there again, as its offline copy
    # (the accel panel with its three runs, the sweep's chart, attention), and no widget error.
    def reopened(page):
        page.wait_for_selector(".llmlab-ac-run", timeout=120_000)
        page.wait_for_selector(".js-plotly-plot", timeout=60_000)
        page.wait_for_timeout(4000)  # past the copies' wait for a widget that never comes
        seen["reopened_runs"] = page.locator(".llmlab-ac-run").count()
        seen["reopened_attention"] = page.locator(".llmlab-att-tab").count()
        errors = page.locator("text=Error displaying widget >> visible=true")
        seen["reopened_errors"] = errors.count()  # hidden beside the copies that replace them
        seen["reopened_answer"] = "Paris" in page.locator(".jp-Notebook").inner_text()
        page.locator(".llmlab-ac").first.screenshot(
            path=str(SHOTS / "first_hour_reopened_accel.png")
        )

    reopen_notebook(saved, SHOTS / "first_hour_reopened.png", actions=reopened)
    assert seen["reopened_runs"] == 3 and seen["reopened_attention"] >= 3
    assert seen["reopened_errors"] == 0 and seen["reopened_answer"]
    nb = nbformat.read(saved, as_version=4)
    sweep_html = "".join(
        o["data"]["text/html"] for o in nb.cells[6].outputs if "text/html" in o.get("data", {})
    )
    assert "needs a running kernel" not in sweep_html and "US$ per 1M" in sweep_html
    accel_html = "".join(
        o["data"]["text/html"] for o in nb.cells[5].outputs if "text/html" in o.get("data", {})
    )
    assert "prompt-lookup" in accel_html and "vs_baseline" in accel_html  # runs were saved
    html = export_html(nb, tmp_path / "first_hour.html")
    screenshot_offline_html(html, SHOTS / "first_hour_report.png", wait_for=".llmlab-card .plotly")
