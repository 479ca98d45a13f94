"""The live tradeoff view and the %llm tradeoff magic, on a tiny model (no browser)."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from tests.helpers import run_magic

FAST = "--max-new-tokens 3 --repeats 3 --warmup 0"


@pytest.fixture(scope="module")
def small_sweep():
    from llmlab.models.registry import load_model
    from llmlab.tradeoff import run_sweep

    lm = load_model("tiny:llama")
    return run_sweep(lm, "baseline,kv=off", ["hi there", "<b>bold</b>"], max_new_tokens=3, warmup=0)


def test_view_draws_points_table_and_click_texts(small_sweep):
    from llmlab.widgets.tradeoff import TradeoffView

    view = TradeoffView(small_sweep)
    markers = [t for t in view.figure.data if t.customdata is not None]
    assert sum(len(t.x) for t in markers) == len(small_sweep.points)
    assert "kv=off" in view.table.value and "IQR" in view.table.value
    assert view.stop_button.disabled  # the sweep is over
    view.show_texts(1)
    assert "reference (baseline)" in view.texts.value
    assert "&lt;b&gt;bold&lt;/b&gt;" in view.texts.value  # prompt text escaped
    view.y_axis.value = "top1"
    assert "top-1" in view.figure.layout.yaxis.title.text
    bundle = view._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "Plotly.newPlot" in data["text/html"]


def test_view_follows_a_running_sweep_and_stops_it():
    from llmlab.widgets.tradeoff import TradeoffView

    from llmlab.models.registry import load_model
    from llmlab.tradeoff import run_sweep

    lm = load_model("tiny:llama")
    sweep = run_sweep(lm, "baseline,kv=off,bf16", ["hi"], max_new_tokens=3, warmup=0, start=False)
    view = TradeoffView(sweep)
    bundle = view._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert not view.stop_button.disabled and "live view" in data["text/html"]

    def press_stop_after_first(s, event):
        if event == "point" and len(s.points) == 1:
            view._stop()

    sweep.subscribe(press_stop_after_first)
    sweep.start()
    assert sweep.status == "stopped" and len(sweep.points) == 1
    assert view.progress.value > 0 and view.stop_button.disabled
    assert "baseline" in view.table.value


def test_magic_runs_a_sweep_and_returns_it(ip, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello\n\nsecond prompt\n")
    run_magic(ip, "load tiny:llama")
    sweep = run_magic(ip, f"tradeoff --configs baseline,kv=off --prompts {prompts} {FAST}")
    assert sweep.prompts == ["hello", "second prompt"] and len(sweep.points) == 3
    out = capsys.readouterr().out
    assert "[1/3] baseline: ok" in out and "kv=off" in out
    assert run_magic(ip, "tradeoff --axes ttft,top1") is sweep  # re-plot the last sweep


def test_magic_takes_prompts_from_the_cell_body(ip):
    run_magic(ip, "load tiny:llama")
    sweep = run_magic(ip, f"tradeoff --configs baseline {FAST}", "one\ntwo\nthree\n")
    assert sweep.prompts == ["one", "two", "three"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("tradeoff --configs baseline,warp=1", "unknown acceleration 'warp'"),
        ("tradeoff --configs baseline --prompts /nonexistent.txt", "not found"),
        ("tradeoff --configs baseline --axes tpot,colour", "unknown y axis"),
        ("tradeoff --configs baseline --price cpu=cheap", "--price takes"),
        ("tradeoff --configs baseline --repeats 1", "at least 3"),
    ],
)
def test_magic_bad_input_is_one_line(ip, line, message):
    run_magic(ip, "load tiny:llama")
    with pytest.raises(UsageError, match=message) as err:
        run_magic(ip, line)
    assert "\n" not in str(err.value)


def test_magic_empty_prompt_file(ip, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    run_magic(ip, "load tiny:llama")
    with pytest.raises(UsageError, match="prompt set is empty"):
        run_magic(ip, f"tradeoff --configs baseline --prompts {empty}")


class _Handle:
    """Stands in for IPython's DisplayHandle: records what the display was updated to."""

    def __init__(self):
        self.updates = []

    def update(self, obj, **kwargs):
        self.updates.append(obj)


def test_each_view_keeps_its_own_axes_and_exports_them(small_sweep):
    from llmlab.widgets.tradeoff import TradeoffView

    before = small_sweep.axes
    a, b = TradeoffView(small_sweep, ("cost", "top1")), TradeoffView(small_sweep)
    a.x_axis.value = "ttft"  # one view's picker ...
    assert small_sweep.axes == before and b.axes == before  # ... changes nothing else
    data = b._repr_mimebundle_()
    html = (data[0] if isinstance(data, tuple) else data)["text/html"]
    assert "time per output token" in html and "US$ per 1M" not in html
    c = TradeoffView(small_sweep, ("cost", "top1"))
    data = c._repr_mimebundle_()
    html = (data[0] if isinstance(data, tuple) else data)["text/html"]
    assert "US$ per 1M output tokens" in html and "top-1 agreement" in html


def test_display_is_updated_with_the_finished_sweep_and_stop_settles(monkeypatch):
    import IPython.display
    from llmlab.widgets.tradeoff import TradeoffView

    from llmlab.models.registry import load_model
    from llmlab.tradeoff import run_sweep

    # The view is two outputs (the live widget, then its offline copy); the copy is the one
    # saved notebooks and reports show, so its display is the one recorded here.
    handle = _Handle()

    def display(obj, **kwargs):
        handle.updates.append(obj)
        return handle

    monkeypatch.setattr(IPython.display, "display", display)
    lm = load_model("tiny:llama")
    sweep = run_sweep(lm, "baseline,kv=off", ["hi"], max_new_tokens=3, warmup=0, start=False)
    view = TradeoffView(sweep)
    view.show(_Handle())
    first = handle.updates[0]["text/html"]
    assert "needs a running kernel" in first
    sweep.subscribe(lambda s, event: event == "point" and view._stop())
    sweep.start()
    assert sweep.status == "stopped"
    last = handle.updates[-1]["text/html"]
    assert "Plotly.newPlot" in last and "needs a running kernel" not in last
    assert view.stop_button.description == "Stopped" and view.stop_button.disabled


def test_empty_plot_has_no_frame_and_labels_stay_inside(small_sweep):
    from llmlab.models.registry import load_model
    from llmlab.tradeoff import run_sweep
    from llmlab.tradeoff.render import build_figure, table_html

    empty = run_sweep(load_model("tiny:llama"), "baseline", ["hi"], start=False)
    fig = build_figure(empty)
    assert fig.layout.xaxis.visible is False and "appears here" in fig.layout.annotations[0].text
    fig = build_figure(small_sweep)
    for trace in fig.data:
        if trace.mode == "markers+text":  # no side label at the plot's edges
            lo, hi = min(trace.x), max(trace.x)
            for x, pos in zip(trace.x, trace.textposition):
                if x == lo:
                    assert not pos.endswith("left")
                if x == hi and hi > lo:
                    assert not pos.endswith("right")
    # The main table keeps to a notebook's width; the rest sits under "more figures".
    main, more = table_html(small_sweep).split("<details", 1)
    assert main.count("<th>") <= 9 and "more figures" in more and "KV MB" in more


def test_headless_kernels_are_told_apart():
    from types import SimpleNamespace

    from llmlab.magics.commands.tradeoff import headless

    def ctx(kernel):
        return SimpleNamespace(shell=SimpleNamespace(kernel=kernel))

    assert headless(ctx(SimpleNamespace(_allow_stdin=False)))
    assert not headless(ctx(SimpleNamespace(_allow_stdin=True)))
    assert not headless(ctx(None))


def test_live_figure_drops_the_empty_note_when_points_arrive():
    from llmlab.widgets.tradeoff import TradeoffView

    from llmlab.models.registry import load_model
    from llmlab.tradeoff import run_sweep

    sweep = run_sweep(load_model("tiny:llama"), "baseline", ["hi"], max_new_tokens=2, start=False)
    sweep.warmup = 0
    view = TradeoffView(sweep)
    assert any("appears here" in a.text for a in view.figure.layout.annotations)
    sweep.start()
    assert not any("appears here" in a.text for a in view.figure.layout.annotations)
    assert view.figure.layout.xaxis.visible is True
    assert view.stop_button.description == "Done" and view.stop_button.button_style == ""


def test_plotly_js_rides_once_per_notebook_and_per_report(small_sweep, monkeypatch, tmp_path):
    # Issue 21: every display of a sweep inlined plotly.js (4.8 MB): one sweep shown twice
    # made a 12.4 MB notebook. Now the first cell that draws a chart carries it (again when
    # that cell runs again); the report keeps one whatever the notebook holds.
    import nbformat
    from llmlab.widgets.tradeoff import TradeoffView

    from llmlab import html as llhtml
    from llmlab.report import export_html

    cell = ["a"]
    monkeypatch.setattr(llhtml, "_current_cell_id", lambda: cell[0])
    monkeypatch.setattr(llhtml, "_plotly_cell", [None])
    mark = llhtml.PLOTLY_JS_MARK

    def copy_html():
        bundle = TradeoffView(small_sweep)._repr_mimebundle_()
        return (bundle[0] if isinstance(bundle, tuple) else bundle)["text/html"]

    first = copy_html()
    cell[0] = "b"
    second = copy_html()
    cell[0] = "a"  # the first cell run again: its new output carries it again
    again = copy_html()
    assert first.count(mark) == 1 and again.count(mark) == 1 and mark not in second
    assert len(second) < 200_000 < 4_000_000 < len(first)
    assert "llmlabPlot(" in second and "$ / 1M tok" in second  # the chart and its table
    # A page on its own (save_html, to_html) always carries it.
    assert small_sweep.to_html().count(mark) == 1
    # The report: one plotly.js, whichever outputs carry it.
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "x",
                outputs=[nbformat.v4.new_output("display_data", data={"text/html": html})],
            )
            for html in (first, second, again)
        ]
    )
    page = export_html(nb, tmp_path / "r.html").read_text()
    assert page.count(f"<script {mark}") == 1 and page.count("llmlabPlot(") == 3 * 2
    assert len(page) < len(first) + 1_000_000
