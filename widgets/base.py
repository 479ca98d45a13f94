"""The base of every live view: an anywidget whose front-end is a real .js/.css file here,
and whose mimebundle also carries an offline copy of itself for exports with no kernel.

In a kernel a view never waits long for its offline copy: building it can take seconds (a long
attention input's prepared answers), so a worker thread builds it; a copy not ready within
:data:`OFFLINE_COPY_WAIT_S` is added to the same display when built (``update_display_data``:
the widget view stays, ``text/html`` is added), which is what a saved notebook keeps. A run
with no one watching (``python -m llmlab.report``, which sets :data:`OFFLINE_COPY_ENV`) builds
it before the cell ends instead, so the executed notebook holds every copy.
"""

from __future__ import annotations

import contextvars
import os
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


class LabWidget(anywidget.AnyWidget):
    """Subclasses set ``_esm``/``_css`` to files in this folder and sync a ``payload`` dict.

    Offline copies (:meth:`static_html`) run the same ``_esm`` with the synced state; a view
    that fetches data on demand lists the requests worth answering ahead
    (:meth:`offline_requests`) and says what still needs the kernel (``offline_note``).
    """

    payload = traitlets.Dict().tag(sync=True)
    #: Shown in the offline copy when the view asks for something only the kernel can do.
    offline_note: ClassVar[str | None] = None

    def __init__(self, result: Any, **kwargs: Any) -> None:
        self.result = result
        self._handle: Any = None  # the display this view is in (see show)
        super().__init__(**{**self.initial_state(result), **kwargs})

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
        # The traits this view syncs itself, not anywidget's or ipywidgets' own.
        base = set(anywidget.AnyWidget.class_trait_names())
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

    def _live_bundle(self) -> tuple[dict[str, Any], dict[str, Any]]:
        # anywidget's own bundle: the widget view and a text/plain line, no offline copy.
        bundle = super()._repr_mimebundle_()
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        return dict(data), dict(metadata or {})

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        # Exported notebooks cannot run the widget with the kernel; they run this copy.
        data["text/html"] = self.static_html()
        return bundle

    def _ipython_display_(self) -> None:
        self.show()

    def show(self, handle: Any = None) -> Any:
        """Display this view (into ``handle``, an IPython DisplayHandle, if given) and return
        the display's handle, waiting at most :data:`OFFLINE_COPY_WAIT_S` for its offline copy.

        A copy built in time rides in the first message. A slower one is added to the same
        display when built: JupyterLab then draws the view once more (ipywidgets makes a new
        view of the same model for an updated output), a price paid only where the wait
        would have been longer.
        """
        from IPython.display import display

        data, metadata = self._live_bundle()
        state = self._state()
        if os.environ.get(OFFLINE_COPY_ENV) == "now":
            html: str | None = self._render(state)
        else:
            future = self._build(state)
            try:
                html = future.result(timeout=OFFLINE_COPY_WAIT_S)
            except TimeoutError:
                html = None
        bundle = data if html is None else {**data, "text/html": html}
        if handle is None:
            handle = display(bundle, metadata=metadata, raw=True, display_id=True)
        else:
            handle.update(bundle, metadata=metadata, raw=True)
        self._handle = handle
        if html is None:
            self._attach(future, handle, data, metadata)
        return handle

    def refresh_offline_copy(self) -> Future | None:
        """Rebuild the offline copy from the current state into this view's display (after
        a change the saved notebook should keep, e.g. the accel panel's runs).

        Returns the worker's future (None when built at once or not displayed).
        """
        if self._handle is None:
            return None
        data, metadata = self._live_bundle()
        state = self._state()
        if os.environ.get(OFFLINE_COPY_ENV) == "now":
            html = self._render(state)
            self._handle.update({**data, "text/html": html}, metadata=metadata, raw=True)
            return None
        future = self._build(state)
        self._attach(future, self._handle, data, metadata)
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

    @staticmethod
    def _attach(future: Future, handle: Any, data: dict, metadata: dict) -> None:
        # The copied context carries the cell's parent header: the update is that cell's.
        context = contextvars.copy_context()

        def update(done: Future) -> None:
            bundle = {**data, "text/html": done.result()}
            context.run(handle.update, bundle, metadata=metadata, raw=True)

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
