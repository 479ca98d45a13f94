"""Live view of a tradeoff sweep: points appear as configurations finish.

A plotly ``FigureWidget`` scatter (x latency or cost, y quality, IQR error bars, Pareto front),
a progress bar with a Stop button, axis pickers, the table filling row by row, and, on a click
on a point, its generated texts next to the reference's. The figure and table are built by the
engine (``llmlab.tradeoff.render``), so the live view and the exported HTML show the same thing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import ipywidgets as widgets
from llmlab.widgets.base import OfflineCopyDisplay

from llmlab.html import card, claim_plotly_js, esc
from llmlab.tradeoff.render import (
    TABLE_CSS,
    X_AXES,
    Y_AXES,
    build_figure,
    check_axes,
    compare_html,
    header_html,
    table_html,
)
from llmlab.tradeoff.result import Sweep

#: Progress redraws are throttled; a point or the end always redraws.
PROGRESS_REFRESH_S = 0.2


class TradeoffView(OfflineCopyDisplay, widgets.VBox):
    """``TradeoffView(sweep)``: subscribes to the sweep and redraws as it fills."""

    def __init__(self, sweep: Sweep, axes: tuple[str, str] | None = None) -> None:
        import plotly.graph_objects as go

        self.sweep = sweep
        x, y = check_axes(axes or sweep.axes)
        self.selected: int | None = None
        self._handle: Any = None  # the display this view was shown in (see show())
        self._lock = threading.Lock()
        self._last_progress = 0.0
        self.progress = widgets.FloatProgress(value=0, min=0, max=1, layout={"width": "320px"})
        self.status = widgets.HTML()
        self.stop_button = widgets.Button(
            description="Stop", icon="stop", button_style="danger", tooltip="keep finished points"
        )
        self.stop_button.on_click(self._stop)
        self.x_axis = widgets.Dropdown(
            options=list(X_AXES), value=x, description="x", layout={"width": "170px"}
        )
        self.y_axis = widgets.Dropdown(
            options=list(Y_AXES), value=y, description="y", layout={"width": "170px"}
        )
        self.x_axis.observe(self._axes_changed, "value")
        self.y_axis.observe(self._axes_changed, "value")
        self.header = widgets.HTML()
        self.figure = go.FigureWidget(build_figure(sweep, (x, y)))
        self.table = widgets.HTML()
        self.texts = widgets.HTML()
        controls = widgets.HBox([self.progress, self.stop_button, self.x_axis, self.y_axis])
        super().__init__(
            [self.header, controls, self.status, self.figure, self.table, self.texts],
            layout={"max_width": "1000px"},
        )
        self.add_class("llmlab-tradeoff")
        self._uid = self.model_id
        self.add_class(f"llmlab-live-{self._uid}")  # its offline copy hides beside it
        self._attach_clicks()
        self._refresh(redraw=True)
        sweep.subscribe(self._on_event)

    # -- events from the sweep (its worker thread) -------------------------------------------
    def _on_event(self, sweep: Sweep, event: str) -> None:
        now = time.monotonic()
        if event == "progress" and now - self._last_progress < PROGRESS_REFRESH_S:
            return
        self._last_progress = now
        self._refresh(redraw=event in ("point", "end"))
        if event == "end":
            self._update_display()

    def _refresh(self, redraw: bool) -> None:
        s = self.sweep
        with self._lock:
            self.progress.value = s.done_units / s.total_units if s.total_units else 0.0
            running = not s.done
            self.stop_button.disabled = not running or s.stopping
            if s.stopping and running:
                self.stop_button.description = "Stopping…"
            elif not running:
                self.stop_button.description = "Stopped" if s.status == "stopped" else "Done"
                self.stop_button.icon = ""
                self.stop_button.button_style = ""
            if running:
                now = f"running <b>{esc(s.current)}</b>" if s.current else "starting"
                self.status.value = (
                    f'<span style="font-size:12px">{now} · {s.done_units}/{s.total_units} '
                    "generations</span>"
                )
            else:
                self.status.value = (
                    f'<span style="font-size:12px">{s.status} · {s.seconds:.0f} s</span>'
                )
            if redraw:
                self.header.value = card(header_html(s))
                self._redraw_figure()
                self.table.value = card(table_html(s), css=TABLE_CSS)
                if self.selected is None:
                    self.texts.value = card(compare_html(s, None))

    def _redraw_figure(self) -> None:
        import plotly.graph_objects as go

        new = build_figure(self.sweep, (self.x_axis.value, self.y_axis.value))
        notes = [a.text for a in new.layout.annotations]
        if notes != [a.text for a in self.figure.layout.annotations]:
            # plotly.js keeps an annotation a relayout removes (the empty plot's note stayed
            # beside the first points): a new figure when the set of notes changes.
            old, self.figure = self.figure, go.FigureWidget(new)
            self.children = [self.figure if c is old else c for c in self.children]
            old.close()
        else:
            with self.figure.batch_update():
                self.figure.data = ()
                self.figure.add_traces(list(new.data))
                self.figure.layout = new.layout
        self._attach_clicks()

    def _attach_clicks(self) -> None:
        for trace in self.figure.data:
            if trace.customdata is not None:
                trace.on_click(self._clicked)

    # -- user actions -------------------------------------------------------------------------
    def _clicked(self, trace: Any, points: Any, state: Any) -> None:
        if not points.point_inds:
            return
        self.show_texts(int(trace.customdata[points.point_inds[0]]))

    def show_texts(self, index: int) -> None:
        """Show point ``index``'s texts next to the reference's (what a click does)."""
        self.selected = index
        self.texts.value = card(compare_html(self.sweep, index), css=TABLE_CSS)

    def _stop(self, _button: Any = None) -> None:
        self.sweep.stop()
        self.stop_button.description = "Stopping…"
        self.stop_button.disabled = True

    @property
    def axes(self) -> tuple[str, str]:
        """The axes this view draws (its own pickers: other views and the sweep keep theirs)."""
        return (self.x_axis.value, self.y_axis.value)

    def _axes_changed(self, _change: Any) -> None:
        with self._lock:
            self._redraw_figure()

    # -- display ------------------------------------------------------------------------------
    def show(self, handle: Any = None) -> None:
        """Display this view (into ``handle``, an IPython DisplayHandle, if given) and its
        offline copy after it, keeping the copy's handle: when the sweep ends, the copy, which
        saved notebooks and reports show, becomes the finished sweep instead of a note."""
        self._plotly_js = claim_plotly_js()  # plotly.js once per notebook, not per chart
        finished = self.sweep.done
        self._show_pair(handle, self._copy_html())
        if finished:
            self._copy_handle = None  # nothing left to update
        elif self.sweep.done:  # it ended while being shown: its end event found no copy to update
            self._update_display()

    def _ipython_display_(self) -> None:
        self.show()

    def _update_display(self) -> None:
        handle, self._copy_handle = self._copy_handle, None
        self._update_copy(self._copy_html(), handle)

    def _copy_html(self) -> str:
        # Exported notebooks cannot run widgets offline. A finished sweep falls back to its
        # self-contained page, drawn on this view's axes; a running one to a note (its page
        # would be empty; the copy is replaced when the sweep ends).
        if self.sweep.done:
            return self.sweep.to_html(self.axes, with_plotly_js=self._plotly_js)
        return card(
            header_html(self.sweep)
            + '<div class="llmlab-stats">live view: needs a running kernel. Display the '
            "sweep again when it has finished for a static copy.</div>"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # One bundle, for hosts that take one; display() uses show() (two outputs).
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        self._plotly_js = claim_plotly_js()
        data["text/html"] = self._copy_html()
        return bundle


def _register() -> None:
    from llmlab.results import register_view

    register_view(Sweep, TradeoffView)


_register()
