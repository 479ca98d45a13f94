"""Live view of a load test: the latency-vs-throughput plot gains a point per level (concurrency
or rate) as each finishes, with a progress line and the percentile table filling below. The
figure and table come from :mod:`llmlab.served.render`, so the live view and the offline HTML
agree."""

from __future__ import annotations

import time
from typing import Any

import ipywidgets as widgets
from llmlab.widgets.base import OfflineCopyDisplay

from llmlab.html import card, claim_plotly_js
from llmlab.served.loadtest import LoadTest
from llmlab.served.render import build_figure, figure_data, header_html, table_html

#: Progress redraws are throttled; a finished level always redraws.
PROGRESS_REFRESH_S = 0.25


class LoadTestView(OfflineCopyDisplay, widgets.VBox):
    """``LoadTestView(test)``: subscribes to the test and redraws as levels finish."""

    def __init__(self, test: LoadTest) -> None:
        import plotly.graph_objects as go

        self.test = test
        self.header = widgets.HTML()
        self.status = widgets.HTML()
        self.progress = widgets.FloatProgress(value=0, min=0, max=1, layout={"width": "320px"})
        self.figure = go.FigureWidget(build_figure(test))
        self.table = widgets.HTML()
        self._last = 0.0
        super().__init__(
            [self.header, widgets.HBox([self.progress, self.status]), self.figure, self.table],
            layout={"max_width": "1000px"},
        )
        self.add_class("llmlab-loadtest")
        self._uid = self.model_id
        self.add_class(f"llmlab-live-{self._uid}")  # its offline copy hides beside it
        self._refresh(redraw=True)
        test.subscribe(self._on_event)

    def _on_event(self, test: LoadTest, event: str) -> None:
        now = time.monotonic()
        if event == "progress" and now - self._last < PROGRESS_REFRESH_S:
            return
        self._last = now
        self._refresh(redraw=event in ("level", "end"))
        if event == "end":
            self._update_display()

    # -- display ------------------------------------------------------------------------------
    def _ipython_display_(self) -> None:
        self.show()

    def show(self, handle: Any = None) -> None:
        """Display this view and its offline copy after it, keeping the copy's handle: when
        the test ends, the copy (what saved notebooks and reports show) becomes its page."""
        self._plotly_js = claim_plotly_js()  # plotly.js once per notebook, not per chart
        finished = self.test.status != "running"
        self._show_pair(handle, self._copy_html())
        if finished:
            self._copy_handle = None  # nothing left to update
        elif (
            self.test.status != "running"
        ):  # it ended while being shown: its end event found no copy to update
            self._update_display()

    def _update_display(self) -> None:
        handle, self._copy_handle = self._copy_handle, None
        self._update_copy(self._copy_html(), handle)

    def _copy_html(self) -> str:
        if self.test.status == "running":
            return card(
                header_html(self.test) + '<div class="llmlab-stats">live view: needs a running '
                "kernel; display the test again when it has finished for a static copy.</div>"
            )
        return self.test.to_html(with_plotly_js=self._plotly_js)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # One bundle, for hosts that take one; display() uses show() (two outputs).
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        self._plotly_js = claim_plotly_js()
        data["text/html"] = self._copy_html()
        return bundle

    def _refresh(self, redraw: bool) -> None:
        t = self.test
        total = max(t.planned * t.requests, 1)
        done = len(t.levels) * t.requests + (t.done_requests if t.current else 0)
        self.progress.value = min(done / total, 1.0) if t.status == "running" else 1.0
        state = t.current or t.status
        self.status.value = (
            f"<span class='llmlab-stats'>&nbsp;{state}: {done}/{total} requests</span>"
        )
        self.header.value = header_html(t)
        if redraw:
            with self.figure.batch_update():
                for trace, data in zip(self.figure.data, figure_data(t)):
                    trace.x, trace.y, trace.text = data["x"], data["y"], data["text"]
                    trace.customdata = data["customdata"]
                    trace.error_y.array = data["error_y"]["array"]
                    trace.error_y.arrayminus = data["error_y"]["arrayminus"]
            self.table.value = table_html(t)


def _register() -> None:
    from llmlab.results import register_view

    register_view(LoadTest, LoadTestView)


_register()
