"""Drive JupyterLab in headless Chromium, as a user would, and take screenshots.

Uses Debian's Chromium (never a browser a tool downloads). One JupyterLab server is started
on first use and stopped when the test process exits.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
VIEWPORT = {"width": 1280, "height": 1000}

_server: dict | None = None


def require_browser() -> None:
    """Skip (with the reason) where Chromium or Playwright is missing."""
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (scripts/bootstrap.sh installs it as root)")
    pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server() -> dict:
    global _server
    if _server is not None:
        return _server
    root = Path(tempfile.mkdtemp(prefix="llmlab-lab-"))
    port, token = _free_port(), secrets.token_hex(16)
    # No "get notified about news?" toast over the screenshots, and nothing fetched.
    settings = root / ".settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}'
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "JUPYTERLAB_SETTINGS_DIR": str(root / ".settings"),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            "--allow-root",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",
            "--JupyterNotebookApp.expose_app_in_browser=True",  # Notebook 7, where installed
            "--ServerApp.disable_check_xsrf=True",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(root / "server.log", "w"),  # noqa: SIM115 - lives as long as the server
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited; see {root / 'server.log'}") from None
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("jupyter lab did not start in 90 s")
    _server = {"proc": proc, "url": url, "token": token, "root": root}
    atexit.register(_stop_server)
    return _server


def _stop_server() -> None:
    if _server is not None:
        _server["proc"].terminate()
        try:
            _server["proc"].wait(timeout=15)
        except subprocess.TimeoutExpired:
            _server["proc"].kill()


def _browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def run_cells_in_jupyterlab(
    cells: list[str],
    out_png: Path,
    *,
    wait_for: str | None = None,
    actions: Callable | None = None,
    timeout_s: float = 240,
) -> Path:
    """Open a new notebook with ``cells`` in JupyterLab, run them all, wait for ``wait_for``
    (a CSS selector inside the outputs), call ``actions(page)`` if given, and screenshot the page.

    Raises if a cell's output shows a Python error, so a broken view fails the test.
    """
    import nbformat
    from playwright.sync_api import sync_playwright

    require_browser()
    server = _start_server()
    name = f"nb_{secrets.token_hex(4)}.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, server["root"] / name)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            # A workspace of its own (reset), so notebooks of earlier tests are not restored.
            page.goto(
                f"{server['url']}/lab/workspaces/{name[:-6]}/tree/{name}"
                f"?reset&token={server['token']}"
            )
            page.wait_for_selector(".jp-Notebook", timeout=timeout_s * 1000)
            # Wait until the kernel is connected, then run everything.
            page.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                " && window.jupyterapp.shell.currentWidget.sessionContext"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                ".connectionStatus === 'connected'",
                timeout=timeout_s * 1000,
            )
            accept = page.locator(".jp-Dialog .jp-mod-accept")
            if accept.count():
                accept.first.click()
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            # Done when no cell shows the running marker [*].
            page.wait_for_function(
                "() => { const p = [...document.querySelectorAll('.jp-InputPrompt')];"
                " return p.length && p.every(e => /\\[\\d+\\]/.test(e.textContent)); }",
                timeout=timeout_s * 1000,
            )
            if wait_for:
                page.wait_for_selector(wait_for, timeout=60_000)
            errors = page.locator(
                ".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']"
            )
            tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
            if actions is not None:
                actions(page)
            page.wait_for_timeout(500)
            page.screenshot(path=str(out_png), full_page=True)
            if tracebacks:
                raise AssertionError("a cell failed in JupyterLab:\n" + tracebacks[0][:2000])
        finally:
            browser.close()
            _shutdown_kernels(server)
    return out_png


def save_with_ctrl_s(page, timeout_s: float = 60) -> None:
    """Save the open notebook as a user does (Ctrl+S) and wait until it is written."""
    page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    page.wait_for_function(
        "() => !window.jupyterapp.shell.currentWidget.context.model.dirty",
        timeout=timeout_s * 1000,
    )


def write_signed(nb, path: Path) -> None:
    """Write a notebook and trust it, as JupyterLab does with what its user saves (an edited
    file is untrusted otherwise: no scripts, no widgets)."""
    import nbformat
    from nbformat.sign import NotebookNotary

    NotebookNotary().sign(nb)
    nbformat.write(nb, path)


def saved_notebook(name: str) -> Path:
    """The path of notebook ``name`` in the test server's root."""
    return _start_server()["root"] / name


def latest_notebook() -> Path:
    """The notebook the last run_cells_in_jupyterlab call wrote (the newest in the root)."""
    return max(_start_server()["root"].glob("nb_*.ipynb"), key=lambda p: p.stat().st_mtime)


def reopen_notebook(
    path: Path,
    out_png: Path,
    *,
    app: str = "lab",
    kernel: bool = True,
    wait_for: str | None = None,
    actions: Callable | None = None,
    timeout_s: float = 180,
) -> Path:
    """Open the saved notebook ``path`` (in the server's root) as a user reopening it would:
    in JupyterLab (``app="lab"``) or Notebook 7 (``app="notebook"``), with a fresh kernel, or
    with none (``kernel=False``: no session can start). Runs nothing. Waits for
    ``wait_for`` (a CSS selector), calls ``actions(page)``, screenshots the page."""
    from playwright.sync_api import sync_playwright

    require_browser()
    server = _start_server()
    name = Path(path).name
    if app == "lab":
        url = (
            f"{server['url']}/lab/workspaces/re{secrets.token_hex(3)}/tree/{name}"
            f"?reset&token={server['token']}"
        )
    else:
        url = f"{server['url']}/notebooks/{name}?token={server['token']}"
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            if not kernel:
                # No kernel can start: the page's requests for a session fail.
                page.route(
                    "**/api/sessions*",
                    lambda r: r.abort() if r.request.method == "POST" else r.continue_(),
                )
            page.goto(url)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout_s * 1000)
            if kernel:
                page.wait_for_function(
                    "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
                    " const k = w && w.sessionContext && w.sessionContext.session"
                    " && w.sessionContext.session.kernel;"
                    " return k && k.connectionStatus === 'connected'; }",
                    timeout=timeout_s * 1000,
                )
            else:  # "Error Starting Kernel", then "Select Kernel": OK, then "No Kernel"
                for wait_s in (20, 5, 5):
                    try:
                        page.wait_for_selector(".jp-Dialog", timeout=wait_s * 1000)
                    except Exception:  # noqa: BLE001 - no more dialogs
                        break
                    no_kernel = page.locator(".jp-Dialog button", has_text="No Kernel")
                    button = (
                        no_kernel
                        if no_kernel.count()
                        else page.locator(".jp-Dialog .jp-mod-accept")
                    )
                    button.first.click()
                    page.wait_for_timeout(500)
            if wait_for:
                page.wait_for_selector(wait_for, timeout=timeout_s * 1000)
            if actions is not None:
                actions(page)
            page.wait_for_timeout(500)
            page.screenshot(path=str(out_png), full_page=True)
        finally:
            browser.close()
            _shutdown_kernels(server)
    return Path(out_png)


def _shutdown_kernels(server: dict) -> None:
    """Stop the test's kernel so later tests do not share the machine with it."""
    import json

    base, auth = server["url"], {"Authorization": f"token {server['token']}"}
    request = urllib.request.Request(f"{base}/api/sessions", headers=auth)
    with urllib.request.urlopen(request, timeout=10) as response:
        sessions = json.load(response)
    for session in sessions:
        urllib.request.urlopen(
            urllib.request.Request(
                f"{base}/api/sessions/{session['id']}", method="DELETE", headers=auth
            ),
            timeout=30,
        )


def screenshot_offline_html(
    html_path: Path,
    out_png: Path,
    *,
    wait_for: str | None = None,
    actions: Callable | None = None,
) -> Path:
    """Open a local HTML file with every network request blocked, and screenshot it.

    Returns the screenshot path; raises if the page tried to reach the network.
    """
    from playwright.sync_api import sync_playwright

    require_browser()
    blocked: list[str] = []

    def route(r):
        if r.request.url.startswith(("file:", "data:", "blob:")):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.route("**/*", route)
            page.goto(Path(html_path).resolve().as_uri())
            if wait_for:
                page.wait_for_selector(wait_for, timeout=30_000)
            if actions is not None:
                actions(page)
            page.wait_for_timeout(300)
            page.screenshot(path=str(out_png), full_page=True)
        finally:
            browser.close()
    if blocked:
        raise AssertionError(f"the page tried to reach the network: {blocked[:3]}")
    return Path(out_png)
