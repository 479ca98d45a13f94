"""The base of every live view: an anywidget whose front-end is a real .js/.css file here,
displayed as two outputs: the live widget, then its offline copy (a ``text/html`` output).

Why two: JupyterLab and Notebook 7 draw any output holding a widget with the widget renderer,
which never falls back to the same output's ``text/html``; a notebook reopened without the
widget's model (fresh kernel, no kernel, "save widget state" off) showed "Error displaying
widget: model not found". The copy's own output shows wherever no live view of the same id is
on the page (``copy_host.js`` decides in the page), and hides beside a live one.

In a kernel a view never waits long for its offline copy: building it can take seconds (a long
attention input's prepared answers), so a worker thread builds it; a copy not ready within
:data:`OFFLINE_COPY_WAIT_S` replaces a placeholder in its output when built
(``update_display_data``), which is what a saved notebook keeps. A run with no one watching
(``python -m llmlab.report``, which sets :data:`OFFLINE_COPY_ENV`) builds it before the cell
ends instead, so the executed notebook holds every copy.
"""

from __future__ import annotations

import contextvars
import os
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, TimeoutError
from pathlib import Path
from typing import Any, ClassVar

import anywidget
import traitlets

from llmlab.results import register_static, register_view

HERE = Path(__file__).parent

#: Budget for answers to a view's requests prepared into its offline copy (base64 included).
OFFLINE_REPLY_BYTES = 1_500_000
#: The engine's reduced copy rides inside the offline copy (for viewers that run no script)
#: up to this size; a larger one (a long attention input's SVG: 1.4 MB at 105 tokens) would
#: double the page, so a one-line note takes its place.
FALLBACK_BYTES = 256_000
#: Set to "now" in a kernel's environment to build offline copies before each cell ends
#: (executing a notebook with no front end: nbclient keeps only what a cell sends before it
#: finishes). Otherwise they are built after the live view is shown.
OFFLINE_COPY_ENV = "LLMLAB_OFFLINE_COPY"
#: How long showing a view waits for its offline copy before showing the view without it.
OFFLINE_COPY_WAIT_S = 0.5

# One worker: copies are built in the order views were shown (a later refresh of the same
# view lands after an earlier one) and never compete with each other for the cores.
_BUILDER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmlab-offline-copy")


class OfflineCopyDisplay:
    """Shows a live widget as two outputs, the widget then its offline copy (see the module
    docstring); mixed into every llmlab view, anywidget or ipywidgets.

    A subclass gives the id its live view marks itself with (``_uid``: ``live_host.js`` for
    anywidget views, a ``llmlab-live-<id>`` class for ipywidgets ones) and its live bundle.
    """

    _uid: str
    _handle: Any = None  # the live output's display
    _copy_handle: Any = None  # the offline copy's display
    _plotly_js = True  # whether its copy carries plotly.js (llmlab.html.claim_plotly_js)

    def _live_bundle(self) -> tuple[dict[str, Any], dict[str, Any]]:
        # ipywidgets' own bundle: the widget view and a text/plain line, no offline copy.
        bundle = super()._repr_mimebundle_()  # type: ignore[misc]
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        # No text: a viewer that cannot draw the widget shows the copy below it instead (a
        # "<...View object at 0x…>" line above it said nothing).
        data = {k: ("" if k == "text/plain" else v) for k, v in data.items() if k != "text/html"}
        return data, dict(metadata or {})

    def _copy_bundle(self, html: str | None) -> dict[str, Any]:
        from llmlab.widgets.static import offline_copy

        return {"text/html": offline_copy(self._uid, NOT_BUILT if html is None else html)}

    def _show_pair(self, handle: Any, html: str | None) -> Any:
        """Display (or update ``handle`` to) the live view, then its copy in an output of its
        own; ``html`` None: a placeholder, replaced by :meth:`_update_copy` when built."""
        from IPython.display import display

        data, metadata = self._live_bundle()
        # Reports (offline_report.html.j2) draw nothing for this output: its copy follows.
        metadata["llmlab"] = {"offline_copy_follows": True}
        if handle is None:
            handle = display(data, metadata=metadata, raw=True, display_id=True)
        else:
            handle.update(data, metadata=metadata, raw=True)
        self._handle = handle
        self._copy_handle = display(self._copy_bundle(html), raw=True, display_id=True)
        return handle

    def _update_copy(self, html: str, handle: Any = None) -> None:
        handle = handle or self._copy_handle
        if handle is not None:
            handle.update(self._copy_bundle(html), raw=True)


#: What a copy's output holds until its copy is built (and keeps if the kernel ends first).
NOT_BUILT = (
    '<div style="color:#9a6700;font:12px system-ui,sans-serif;margin:4px 0">The offline copy '
    "of this view was not built before its kernel ended: run the cell again to keep one.</div>"
)


class LabWidget(OfflineCopyDisplay, anywidget.AnyWidget):
    """Subclasses set ``_esm``/``_css`` to files in this folder and sync a ``payload`` dict.

    Offline copies (:meth:`static_html`) run the same ``_esm`` with the synced state; a view
    that fetches data on demand lists the requests worth answering ahead
    (:meth:`offline_requests`) and says what still needs the kernel (``offline_note``).
    In a kernel, anywidget runs ``live_host.js``, which runs the view's module (``_view_esm``)
    once it knows a kernel is behind the model.
    """

    payload = traitlets.Dict().tag(sync=True)
    #: The view's module, run by live_host.js (anywidget's own ``_esm``).
    _view_esm = traitlets.Unicode().tag(sync=True)
    #: This view's id: its widget model's id, the class its live view carries, the copy's link.
    _llmlab_id = traitlets.Unicode().tag(sync=True)
    #: Shown in the offline copy when the view asks for something only the kernel can do.
    offline_note: ClassVar[str | None] = None

    def __init__(self, result: Any, **kwargs: Any) -> None:
        from llmlab.widgets.static import source

        self.result = result
        self._handle = None
        self._uid = uuid.uuid4().hex
        super().__init__(
            **{**self.initial_state(result), **kwargs},
            model_id=self._uid,
            _llmlab_id=self._uid,
            _view_esm=source(self._source("_esm")),
            _esm=source(HERE / "live_host.js"),
        )

    @classmethod
    def initial_state(cls, result: Any) -> dict[str, Any]:
        """The synced traits a new view of ``result`` starts with."""
        return {"payload": result.payload()}

    @classmethod
    def offline_requests(cls, result: Any) -> list[dict[str, Any]]:
        """Requests to answer ahead for the offline copy, most wanted first (default: none)."""
        return []

    @classmethod
    def _view_traits(cls) -> list[str]:
        # The traits this view syncs itself, not anywidget's, ipywidgets' or this base's own.
        base = set(anywidget.AnyWidget.class_trait_names()) | {"_view_esm", "_llmlab_id"}
        return [n for n in cls.class_trait_names(sync=True) if n not in base]

    @classmethod
    def _source(cls, key: str) -> Any:
        # The class's own _esm/_css (a file), not the per-instance trait anywidget adds on a
        # subclass it creates for each widget.
        for klass in cls.__mro__:
            value = klass.__dict__.get(key)
            if value is not None and not isinstance(value, traitlets.TraitType):
                return value
        return None

    @classmethod
    def render_static(cls, result: Any, state: dict[str, Any] | None = None) -> str:
        """Offline HTML of ``result`` in this view (``state``: the synced traits, if known)."""
        from llmlab.widgets.static import NEEDS_KERNEL, prepared_replies, static_view

        if state is None:
            state = {n: cls.class_traits()[n].default() for n in cls._view_traits()}
            state |= cls.initial_state(result)
        replies = (
            prepared_replies(result.answer, cls.offline_requests(result), OFFLINE_REPLY_BYTES)
            if hasattr(result, "answer")
            else {}
        )
        return static_view(
            cls._source("_esm"),
            cls._source("_css"),
            state,
            fallback_html=_fallback(result),
            replies=replies,
            note=cls.offline_note or NEEDS_KERNEL,
        )

    @classmethod
    def register(cls, *result_types: type) -> None:
        """Display ``result_types`` as this view, and export them as its offline copy."""
        for result_type in result_types:
            register_view(result_type, cls)
            register_static(result_type, cls.render_static)

    def static_html(self) -> str:
        """This view's offline copy with its current state."""
        return self.render_static(self.result, self._state())

    def _state(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in self._view_traits()}

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # One bundle, for hosts that take one (the widget and its copy): display() and
        # results use show(), which gives the copy an output of its own.
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data["text/html"] = self.static_html()
        return bundle

    def _ipython_display_(self) -> None:
        self.show()

    def show(self, handle: Any = None) -> Any:
        """Display this view (into ``handle``, an IPython DisplayHandle, if given) and its
        offline copy after it; return the live view's handle. Waits at most
        :data:`OFFLINE_COPY_WAIT_S` for the copy: a copy built in time rides in the first
        message, a slower one replaces a placeholder in its own output when built (the live
        view is not drawn again).
        """
        state = self._state()
        future: Future | None = None
        if os.environ.get(OFFLINE_COPY_ENV) == "now":
            html: str | None = self._render(state)
        else:
            future = self._build(state)
            try:
                html = future.result(timeout=OFFLINE_COPY_WAIT_S)
            except TimeoutError:
                html = None
        handle = self._show_pair(handle, html)
        if html is None and future is not None:
            self._attach(future, self._copy_handle)
        return handle

    def refresh_offline_copy(self) -> Future | None:
        """Rebuild the offline copy from the current state into its output (after a change
        the saved notebook should keep, e.g. the accel panel's runs).

        Returns the worker's future (None when built at once or not displayed).
        """
        if self._copy_handle is None:
            return None
        state = self._state()
        if os.environ.get(OFFLINE_COPY_ENV) == "now":
            self._update_copy(self._render(state))
            return None
        future = self._build(state)
        self._attach(future, self._copy_handle)
        return future

    def _render(self, state: dict[str, Any]) -> str:
        try:
            return self.render_static(self.result, state)
        except Exception as err:  # noqa: BLE001 - the live view must outlive a failed copy
            from llmlab.errors import one_line
            from llmlab.html import card, esc

            return card(f'<div class="llmlab-note">No offline copy: {esc(one_line(err))}</div>')

    def _build(self, state: dict[str, Any]) -> Future:
        # The state is read on the kernel's thread; the worker only renders it and asks the
        # result for answers (read-only), so the live view keeps answering its own requests.
        return _BUILDER.submit(self._render, state)

    def _attach(self, future: Future, handle: Any) -> None:
        # The copied context carries the cell's parent header: the update is that cell's.
        context = contextvars.copy_context()

        def update(done: Future) -> None:
            context.run(self._update_copy, done.result(), handle)

        future.add_done_callback(update)


def _fallback(result: Any) -> str:
    from llmlab.html import card, esc

    html = result.to_html()
    if len(html) <= FALLBACK_BYTES:
        return html
    return card(
        f"<b>{esc(result.summary())}</b>"
        '<div class="llmlab-note">An interactive view: open this page in a browser that runs '
        "scripts (no network needed). Its reduced static copy is left out to keep the page "
        "small.</div>"
    )


class AnsweringView(LabWidget):
    """A view whose front end asks its result for data on demand (rows, patterns): each
    message is answered by ``result.answer(content) -> (reply, buffers)``."""

    def __init__(self, result: Any) -> None:
        super().__init__(result)
        self.on_msg(self._on_request)

    def _on_request(self, _widget: Any, content: dict, _buffers: list) -> None:
        reply, buffers = self.result.answer(content)
        self.send(reply, buffers)
