"""examples/marimo_quickstart.py served by marimo on 127.0.0.1 and looked at in Chromium: every
view live (kernel round trips included), the tradeoff plot drawn. Screenshots:
build/screenshots/marimo_*.png."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browser import VIEWPORT, _browser, require_browser

pytest.importorskip("marimo")

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "build" / "screenshots"
EXAMPLE = ROOT / "examples" / "marimo_quickstart.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def marimo_app(tmp_path):
    """``marimo run`` on the example (random tiny model: the views, not the answers, are
    looked at here; the headless CI test runs the default model)."""
    port = _free_port()
    log = open(tmp_path / "marimo.log", "w")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "marimo",
            "run",
            str(EXAMPLE),
            "--headless",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-token",
            "--",
            "--model",
            "tiny:llama",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError((tmp_path / "marimo.log").read_text()[-2000:]) from None
            time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.slow
@pytest.mark.browser
def test_marimo_quickstart_in_chromium(marimo_app):
    from playwright.sync_api import sync_playwright

    require_browser()
    SHOTS.mkdir(parents=True, exist_ok=True)
    seen: dict = {}
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(marimo_app)
            for selector in (".llmlab-nt-row", ".llmlab-att-tab", ".llmlab-lens", ".llmlab-ac"):
                page.wait_for_selector(selector, timeout=300_000)
            page.wait_for_selector(".js-plotly-plot .scatterlayer .point", timeout=300_000)
            page.wait_for_timeout(1500)
            seen["points"] = page.locator(".js-plotly-plot .scatterlayer .point").count()
            seen["kernel_notes"] = page.get_by_text("needs the running kernel").count()
            # A kernel round trip: the head view asks the kernel for another layer's weights.
            att = page.locator(".llmlab-att").first
            att.scroll_into_view_if_needed()
            before = att.locator("canvas").first.evaluate("c => c.toDataURL()")
            att.locator(".llmlab-att-panel select").first.select_option("1")
            page.wait_for_timeout(2000)
            seen["layer_drawn"] = before != att.locator("canvas").first.evaluate(
                "c => c.toDataURL()"
            )
            seen["status"] = att.locator(".llmlab-att-status").first.inner_text()
            att.screenshot(path=str(SHOTS / "marimo_attention.png"))
            # The accel panel runs on the kernel too.
            page.locator(".llmlab-ac-run-button").click()
            page.wait_for_selector(".llmlab-ac-run", timeout=180_000)
            seen["runs"] = page.locator(".llmlab-ac-run").count()
            page.locator(".llmlab-ac").screenshot(path=str(SHOTS / "marimo_accel.png"))
            plot = page.locator(".js-plotly-plot").first
            plot.scroll_into_view_if_needed()
            plot.screenshot(path=str(SHOTS / "marimo_tradeoff.png"))
            page.screenshot(path=str(SHOTS / "marimo_quickstart.png"), full_page=True)
        finally:
            browser.close()
    assert seen["points"] >= 2  # baseline and kv=off: the plot is not blank
    assert seen["kernel_notes"] == 0  # live views, not offline copies
    assert seen["layer_drawn"] and "not in this offline copy" not in seen["status"]
    assert seen["runs"] >= 1
