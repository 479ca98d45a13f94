"""The base of every result object: displays, exports and renders the same way everywhere.

The engine renders static, self-contained HTML (``to_html``). A front door may register a
live view for a result type (``register_view``); then the result displays as that widget, and
its mimebundle still carries the static HTML, which exported notebooks and reports show.
A front door may also register a richer static renderer (``register_static``: the widgets
inline their own view script and data); ``static_html()`` uses it and falls back to
``to_html()`` where none is registered.
"""

from __future__ import annotations

import importlib
import sys
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

_VIEWS: dict[type, Callable[[Any], Any]] = {}


def register_view(result_type: type, factory: Callable[[Any], Any]) -> None:
    """Show ``result_type`` as ``factory(result)`` (a widget) wherever it is displayed."""
    _VIEWS[result_type] = factory


_STATIC: dict[type, Callable[[Any], str]] = {}
_MARIMO: dict[type, Callable[[Any], Any]] = {}


def register_marimo_view(result_type: type, factory: Callable[[Any], Any]) -> None:
    """Show ``result_type`` in marimo as ``factory(result)``, where its Jupyter view cannot
    run there (marimo runs anywidgets, not composite ipywidgets)."""
    _MARIMO[result_type] = factory


def register_static(result_type: type, render: Callable[[Any], str]) -> None:
    """Render ``result_type`` offline as ``render(result)`` (self-contained HTML)."""
    _STATIC[result_type] = render


def _lookup(table: dict[type, Callable[[Any], Any]], result: Any) -> Callable[[Any], Any] | None:
    for cls in type(result).__mro__:
        if cls in table:
            return table[cls]
    return None


def _live_view(result: Any) -> Any | None:
    factory = _lookup(_VIEWS, result)
    return factory(result) if factory is not None else None


def current_execution() -> Any | None:
    """The IPython cell now running (its ExecutionResult), or None outside IPython."""
    ip_module = sys.modules.get("IPython")
    shell = ip_module.get_ipython() if ip_module is not None else None
    hook = getattr(shell, "displayhook", None)
    return getattr(hook, "exec_result", None)


class Result:
    """Mixin for result dataclasses: ``to_html()``, ``save_html()``, rich display."""

    # A front door that already drew this result live (streamed it, showed its widget) sets
    # ``_shown_live``; the cell that drew it then does not draw it again as its value (no
    # second ``Out[n]``), while a later ``r`` or ``display(r)`` shows it in full.
    @property
    def _shown_live(self) -> bool:
        shown_in = getattr(self, "_shown_in", None)
        return shown_in is not None and shown_in() is current_execution()

    @_shown_live.setter
    def _shown_live(self, value: bool) -> None:
        run = current_execution() if value else None
        self._shown_in = weakref.ref(run) if run is not None else None

    def to_html(self) -> str:  # pragma: no cover - every result implements it
        raise NotImplementedError

    def static_html(self) -> str:
        """The richest offline HTML available: a registered static renderer, else ``to_html``."""
        render = _lookup(_STATIC, self)
        return render(self) if render is not None else self.to_html()

    def summary(self) -> str:
        """One line for plain-text displays."""
        return type(self).__name__

    def to_text(self) -> str:
        """Plain-text rendering for terminals (defaults to the one-line summary)."""
        return self.summary()

    def __repr__(self) -> str:
        return self.summary()

    def save_html(self, path: str | Path, title: str | None = None) -> Path:
        """Write a standalone offline HTML page of this result. The page is built first and
        written atomically (:mod:`llmlab.files`): a failure leaves an existing file as it was."""
        from llmlab.files import write_text
        from llmlab.html import esc

        path = Path(path)
        title = title or type(self).__name__
        page = (
            f'<!doctype html><html><head><meta charset="utf-8"><title>{esc(title)}</title></head>'
            f"<body>{self.static_html()}</body></html>"
        )
        return write_text(path, page)

    def _display_(self) -> Any:
        """marimo's display protocol (marimo calls it; Jupyter does not): the live view, which
        marimo runs with its own kernel, else the offline HTML."""
        # marimo users import Lab, not the magics: the visual front door registers its views
        # on first use here (the engine itself never needs it).
        importlib.import_module("llmlab.widgets")
        factory = _lookup(_MARIMO, self) or _lookup(_VIEWS, self)
        if factory is not None:
            return factory(self)
        import marimo as mo

        return mo.Html(self.static_html())

    def _ipython_display_(self) -> None:
        # IPython calls this for the cell's value and for display(). The value of the cell that
        # drew the result live is skipped: the displayhook then sends nothing (no Out[n] line),
        # yet still binds ``_`` and ``Out[n]``, so the result stays reachable.
        if self._shown_live:
            if "ipykernel" not in sys.modules:
                # A terminal has already printed "Out[n]: "; end it with the one-line summary.
                print(self.summary())
            return
        self._show()

    def _show(self, handle: Any = None) -> None:
        """Display this result (into ``handle``, an IPython DisplayHandle, if given)."""
        from IPython.display import display

        # A live view shows itself at once and adds its offline copy to the display when built.
        view = _live_view(self) if "ipykernel" in sys.modules else None
        if view is not None and hasattr(view, "show"):
            view.show(handle)
            return
        bundle = view._repr_mimebundle_() if view is not None else self._repr_mimebundle_()
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        if handle is None:
            display(data, metadata=metadata, raw=True)
        else:
            handle.update(data, metadata=metadata, raw=True)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        # Widgets need a kernel-backed front end; a terminal IPython gets text.
        view = _live_view(self) if "ipykernel" in sys.modules else None
        if view is not None:
            return view._repr_mimebundle_(include=include, exclude=exclude)
        return {"text/plain": self.to_text(), "text/html": self.static_html()}
