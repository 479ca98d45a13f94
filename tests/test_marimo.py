"""marimo as a host (issue 21, finding 3): results show as live views there, the tradeoff and
load-test plots drawn by marimo's plotly; Lab has a method for every view the magics show;
examples/marimo_quickstart.py runs headless."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("marimo")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "marimo_quickstart.py"


@pytest.fixture(scope="module")
def lab():
    from llmlab import Lab

    lab = Lab()
    lab.load("tiny:llama")
    return lab


@pytest.fixture(autouse=True)
def marimo_formatters(monkeypatch):
    """marimo's formatters as its kernel registers them (plotly's only inside a notebook)."""
    import IPython.core.display_functions
    import IPython.display
    from marimo._output.formatters import plotly_formatters
    from marimo._output.formatters.formatters import register_formatters

    # marimo's registration replaces IPython's display functions for the whole process: keep
    # them to be put back after each test (later tests display through IPython's own).
    for module in (IPython.display, IPython.core.display_functions):
        for name in ("display", "update_display"):
            monkeypatch.setattr(module, name, getattr(module, name))
    monkeypatch.setattr(plotly_formatters, "running_in_notebook", lambda: True)
    register_formatters()
    plotly_formatters.PlotlyFormatter().register()


def _format(obj):
    """What marimo's kernel makes of a cell's value: (mimetype, data)."""
    from marimo._output.formatting import try_format

    out = try_format(obj)
    assert out.exception is None, out.traceback
    return out.mimetype, out.data


def test_results_display_as_live_views_in_marimo(lab):
    # Before: marimo took the result's text/html, the offline copy, whose note says to open
    # the notebook with a kernel, inside a live kernel.
    from llmlab.widgets.base import LabWidget

    for result in (
        lab.next_token("The cat sat on the"),
        lab.attention("The cat sat."),
        lab.lens("The cat sat."),
        lab.accel(max_new_tokens=4),
    ):
        view = result._display_()
        assert isinstance(view, LabWidget) and view.result is result
        mime, data = _format(result)
        assert mime == "text/html" and "<marimo-anywidget" in data
        assert "llmlab-static" not in data  # not the offline copy


def test_tradeoff_plot_is_marimos_own_plotly(lab):
    # Before: the sweep's offline page, whose inline plotly.js marimo does not run (blank).
    sweep = lab.tradeoff("baseline,kv=off", ["hi"], max_new_tokens=3, warmup=0)
    assert sweep.done
    mime, data = _format(sweep)
    assert mime == "text/html" and "marimo-plotly" in data
    assert "Plotly.newPlot" not in data and "data-llmlab-plotlyjs" not in data
    assert "kv=off" in data and "IQR" in data  # the table beside it


def test_load_test_plot_is_marimos_own_plotly():
    from llmlab import Lab
    from tests.served_fake import MODEL, FakeServer

    lab, fake = Lab(), FakeServer()
    try:
        lab.load(f"openai:{fake.url}", model=MODEL, name="served")
        test = lab.load_test([1, 2], target="served", requests=2, max_tokens=4, warmup=False)
    finally:
        fake.stop()
    mime, data = _format(test)
    assert mime == "text/html" and "marimo-plotly" in data and "TTFT" in data


def test_lab_has_a_method_for_every_view_the_magics_show():
    import llmlab.magics.commands  # noqa: F401  (registers every %llm command)
    from llmlab.magics.registry import COMMANDS

    from llmlab import Lab

    views = {"attention", "moe", "moe-train", "tradeoff", "accel", "lens", "next", "load-test"}
    assert views <= set(COMMANDS)  # the magics' views
    for name in views:
        method = {"next": "next_token"}.get(name, name.replace("-", "_"))
        assert callable(getattr(Lab, method, None)), name


def test_lab_moe_routes_a_text():
    from llmlab import Lab

    lab = Lab()
    lab.load("tiny:mixtral")
    routing = lab.moe("The cat sat on the mat.")
    assert routing.summary() and type(routing).__name__ == "MoeRouting"
    assert re.search("marimo-anywidget", _format(routing)[1])


@pytest.mark.slow
def test_marimo_quickstart_runs_headless(tmp_path):
    """What CI runs: marimo executes the example on the default model and exports it."""
    out = tmp_path / "quickstart.html"
    run = subprocess.run(
        [sys.executable, "-m", "marimo", "export", "html", str(EXAMPLE), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    page = out.read_text()
    assert page.count("marimo-anywidget data-initial") == 4  # next, attention, lens, accel
    assert "marimo-plotly" in page and "Paris" in page
    assert "Traceback" not in page and "marimo-error" not in page
