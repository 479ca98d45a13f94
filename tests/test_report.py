"""Offline reports: executed notebooks export to one self-contained HTML file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from llmlab.report import execute, export_html, main
from tests.browser import screenshot_offline_html

SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
EVIL = "</script><script>window.__pwned = 1</script>"


def _notebook(tmp_path, cells):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def test_widgets_export_as_their_static_fallback(tmp_path):
    path = _notebook(
        tmp_path,
        [
            "%load_ext llmlab",
            "%llm load tiny:llama",
            '%llm next "</script><script>alert(1)"',
            '%llm attention "The cat sat."',
        ],
    )
    nb = execute(path, timeout=300)
    # Each view: the widget, then its offline copy in an output of its own (built before the
    # cell ended: the report asks the kernel for copies at once, not after display).
    for cell in nb.cells[2:]:
        live, copy = cell.outputs
        assert "application/vnd.jupyter.widget-view+json" in live["data"]
        assert "text/html" not in live["data"] and live["metadata"]["llmlab"]
        assert "llmlab-static-data" in copy["data"]["text/html"]
    html = export_html(nb, tmp_path / "nb.html").read_text()
    assert "Next token after" in html  # the reduced copy, kept for viewers without script
    assert "<script>alert(1)" not in html
    # The offline copy runs the view's own module on its data, with nothing to fetch.
    blocks = re.findall(r'<script[^>]*class="llmlab-static-data"[^>]*>(.*?)</script>', html, re.S)
    data = json.loads(blocks[0])
    assert "applyFilters" in data["esm"]
    assert data["state"]["payload"]["prompt"] == "</script><script>alert(1)"
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)


@pytest.mark.slow
@pytest.mark.browser
def test_report_opens_offline_in_chromium(tmp_path):
    path = _notebook(tmp_path, ["%load_ext llmlab", "%llm load tiny:llama", '%llm next "hello"'])
    html = export_html(execute(path, timeout=300), tmp_path / "nb.html")
    # The view's own module ran (its rows), in place of the reduced card.
    png = screenshot_offline_html(html, tmp_path / "report.png", wait_for=".llmlab-nt-row")
    assert png.stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.browser
def test_offline_report_switches_layers_and_tabs(tmp_path):
    """A report's attention view switches layer, tab and sort with no kernel and no network."""
    path = _notebook(
        tmp_path,
        [
            "%load_ext llmlab",
            "%llm load tiny:llama",
            f'%llm attention --compare int8 --layer 0 "The cat sat. {EVIL} The cat sat."',
            f'%llm next "{EVIL}"',
        ],
    )
    html = export_html(execute(path, timeout=300), tmp_path / "nb.html")
    seen: dict = {}

    def tour(page):
        page.wait_for_selector(".llmlab-att-tab")
        seen["views"] = page.locator(".llmlab-static-view").count()
        seen["fallbacks"] = page.locator(".llmlab-static-fallback").count()
        page.click(".llmlab-att-tab >> text=Head view")
        hv = page.locator(".llmlab-att-panel").first
        before = hv.locator("canvas").first.evaluate("c => c.toDataURL()")
        page.select_option(".llmlab-att-panel select", "1")
        page.wait_for_timeout(300)
        seen["layer"] = page.eval_on_selector(".llmlab-att-panel select", "s => s.value")
        seen["status"] = page.inner_text(".llmlab-att-status")
        seen["lines_changed"] = before != hv.locator("canvas").first.evaluate("c => c.toDataURL()")
        page.screenshot(path=str(SHOTS / "report_offline_layer1.png"), full_page=True)
        page.click(".llmlab-att-tab >> text=Heads table")
        first_row = page.locator(".llmlab-att-table tr").nth(1).inner_text()
        page.click(".llmlab-att-table th >> text=entropy")
        seen["sorted"] = first_row != page.locator(".llmlab-att-table tr").nth(1).inner_text()
        page.select_option(".llmlab-att-variant", "b")  # the header names what is shown
        seen["header"] = page.inner_text(".llmlab-att-header")
        page.click(".llmlab-att-tab >> text=Grid")
        page.locator(".llmlab-att-thumb").nth(5).click()
        page.wait_for_timeout(300)
        seen["grid_status"] = page.inner_text(".llmlab-att-status")  # a short input's heads fit
        page.click(".llmlab-att-tab >> text=Head view")
        seen["note_before"] = page.locator(".llmlab-static-note").first.is_visible()
        page.locator(".llmlab-att-left .llmlab-att-tok").nth(3).click()  # asks for an exact row
        page.wait_for_timeout(300)
        seen["note"] = page.inner_text(".llmlab-static-note >> nth=0")
        eval_slider = "e => { e.value = 3; e.dispatchEvent(new Event('input')); }"
        page.eval_on_selector(".llmlab-nt-slider:nth-child(2) input", eval_slider)
        seen["cut"] = page.locator(".llmlab-nt-cut").count()
        seen["pwned"] = page.evaluate("() => window.__pwned === 1")

    SHOTS.mkdir(parents=True, exist_ok=True)
    screenshot_offline_html(
        html, SHOTS / "report_offline.png", wait_for=".llmlab-nt-row", actions=tour
    )
    assert seen["views"] == 2 and seen["fallbacks"] == 0
    assert seen["layer"] == "1" and seen["status"] == "" and seen["lines_changed"]
    assert seen["sorted"] and seen["cut"] > 0 and seen["pwned"] is False
    assert (
        "B: tiny-llama" in seen["header"]
        and "A: tiny-llama" not in seen["header"].split("showing")[0]
    )
    assert seen["grid_status"] == ""
    # An exact row is not in the page: the view says so in place, and only when asked.
    assert not seen["note_before"] and "need the running kernel" in seen["note"]


def test_first_hour_notebook_exports_finished_views_without_echoes(tmp_path, capsys):
    """One headless run of what a new user types: no Out[n] echo under a view a magic drew,
    the sweep's static copy is the finished sweep on the requested axes, nothing truncated."""
    path = _notebook(
        tmp_path,
        [
            "%load_ext llmlab",
            "%llm load tiny:llama",
            '%llm generate --max-new-tokens 4 "hello"',
            'r = %llm generate --max-new-tokens 4 "hello"',
            "r",
            "sweep = %llm tradeoff --configs baseline,kv=off --axes cost,top1 "
            "--max-new-tokens 3 --repeats 3 --warmup 0",
            "sweep",
            "%llm accel list",
        ],
    )
    main([str(path), "--execute", "-o", str(tmp_path / "out")])  # what the README says
    printed = capsys.readouterr()
    assert "cell 6: sweep = %llm tradeoff" in printed.err  # per-cell progress on stderr
    assert "executed, with saved widget state" in printed.out
    nb = nbformat.read(tmp_path / "out" / "nb.ipynb", as_version=4)
    kinds = [[o["output_type"] for o in c.outputs] for c in nb.cells]
    assert "execute_result" not in kinds[2] + kinds[3] + kinds[5]  # no second Out[n]
    assert kinds[4] == ["display_data"]  # asked for by name: shown in full
    assert "4 new" in nb.cells[4].outputs[0]["data"]["text/plain"]
    assert "(shown above)" not in str(nb)
    # The live view, then its offline copy in an output of its own.
    live, copy = [o for o in nb.cells[5].outputs if o["output_type"] == "display_data"]
    assert "text/html" not in live["data"]
    static = copy["data"]["text/html"]
    assert "needs a running kernel" not in static and "Plotly.newPlot" in static
    assert "US$ per 1M output tokens" in static and "top-1 agreement" in static
    (again,) = [o["data"]["text/html"] for o in nb.cells[6].outputs if "text/html" in o["data"]]
    assert "US$ per 1M output tokens" in again and "running" not in again.split("</b>")[1][:20]
    listing = nb.cells[7].outputs[0]["data"]["text/html"]
    assert "..." not in listing and "optimum-quanto or hqq (fp8 is built in)" in listing
    html = (tmp_path / "out" / "nb.html").read_text()
    assert "needs a running kernel" not in html and "(shown above)" not in html


# -- the command line: one line per mistake, never a lost notebook ------------------------------


def _one_line_failure(capsys, argv) -> str:
    status = main(argv)
    err = capsys.readouterr().err.strip()
    assert status == 1, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    "make, said",
    [
        (lambda tmp: tmp / "missing.ipynb", "no such file"),
        (lambda tmp: tmp, "is a folder"),
        (lambda tmp: _file(tmp, b"\x00\xff\xfe garbage"), "not a notebook (not UTF-8 text)"),
        (lambda tmp: _file(tmp, b"{not json"), "not a notebook (not JSON)"),
        (lambda tmp: _file(tmp, b"[1, 2]"), "JSON list without a list of cells"),
        (lambda tmp: _file(tmp, b""), "not a notebook (empty)"),
        (lambda tmp: _file(tmp, b'"just a string"'), "JSON str"),
        (lambda tmp: _file(tmp, b'{"cells": [], "nbformat": 99}'), "nbformat can read"),
        (lambda tmp: _file(tmp, b'{"cells": "x", "nbformat": 4}'), "without a list of cells"),
        (lambda tmp: Path("/etc/passwd"), "not a notebook (not JSON)"),
        (lambda tmp: Path("/dev/null"), "not a regular file"),
    ],
)
def test_a_file_that_is_not_a_notebook_is_one_line(tmp_path, capsys, make, said):
    path = make(tmp_path)
    err = _one_line_failure(capsys, [str(path), "-o", str(tmp_path / "out")])
    assert said in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def _file(tmp: Path, data: bytes) -> Path:
    path = tmp / "bad.ipynb"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "output, said",
    [
        (lambda tmp: _file(tmp, b"x"), "is a file, not a folder"),
        (lambda tmp: _file(tmp, b"x") / "sub", "cannot create the output folder"),
    ],
)
def test_an_output_folder_that_cannot_be_used_is_one_line(tmp_path, capsys, output, said):
    path = _notebook(tmp_path, ["1 + 1"])
    err = _one_line_failure(capsys, [str(path), "-o", str(output(tmp_path))])
    assert said in err


def test_an_unwritable_output_folder_is_one_line(tmp_path, capsys, monkeypatch):
    import os

    path = _notebook(tmp_path, ["1 + 1"])
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: "locked" not in str(p) and real_access(p, mode)
    )
    (tmp_path / "locked").mkdir()
    err = _one_line_failure(capsys, [str(path), "-o", str(tmp_path / "locked")])
    assert "cannot write into the output folder" in err


@pytest.mark.parametrize("timeout", ["0", "-5", "nan", "inf", "soon"])
def test_a_bad_timeout_is_one_line(tmp_path, capsys, timeout):
    path = _notebook(tmp_path, ["1 + 1"])
    with pytest.raises(SystemExit) as exit_:
        main([str(path), "--execute", "--timeout", timeout])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and "--timeout" in err


def test_two_notebooks_of_one_name_never_replace_each_other(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _notebook(tmp_path / "a", ["1"])
    second = _notebook(tmp_path / "b", ["2"])
    out = tmp_path / "out"
    err = _one_line_failure(capsys, [str(first), str(second), "-o", str(out)])
    assert "would both write" in err and not out.exists()
    err = _one_line_failure(capsys, [str(first), str(first), "-o", str(out)])  # one twice
    assert "would both write" in err


def test_report_into_the_notebooks_own_folder_keeps_the_source(tmp_path, capsys):
    path = _notebook(tmp_path, ["6 * 7"])
    source = path.read_bytes()
    assert main([str(path), "--execute", "-o", str(tmp_path), "--timeout", "120"]) == 0
    assert path.read_bytes() == source  # the notebook the user wrote, untouched
    executed = nbformat.read(tmp_path / "nb.executed.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["data"]["text/plain"] == "42"
    assert "wrote " + str(tmp_path / "nb.executed.ipynb") in capsys.readouterr().out
    # without --execute the report is the only output; the notebook is still not touched
    assert main([str(path), "-o", str(tmp_path)]) == 0 and path.read_bytes() == source


@pytest.mark.parametrize(
    "cells, said",
    [
        (["x = 1", "1 / 0", "x = 2"], "cell 2 raised ZeroDivisionError: division by zero"),
        (["import time", "time.sleep(60)"], "cell 2 ran past --timeout 3 s and was stopped"),
        (["raise SystemExit(3)"], "cell 1 raised SystemExit"),
    ],
)
def test_a_notebook_that_fails_is_one_line_and_keeps_what_ran(tmp_path, capsys, cells, said):
    path = _notebook(tmp_path, cells)
    out = tmp_path / "out"
    err = capsys.readouterr() and None
    status = main([str(path), "--execute", "-o", str(out), "--timeout", "3"])
    printed = capsys.readouterr()
    err = printed.err.strip().splitlines()
    assert status == 1
    failure = [line for line in err if line.startswith(str(path))]
    assert len(failure) == 1 and said in failure[0], err
    assert "Traceback" not in printed.err
    assert "run up to the failure" in printed.out  # the executed copy, with the error in it
    assert nbformat.read(out / "nb.ipynb", as_version=4).cells[0].outputs is not None
    assert (out / "nb.html").is_file()
