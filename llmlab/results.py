"""The base of every result object: displays, exports and renders the same way everywhere.

The engine renders static, self-contained HTML (``to_html``). A front door may register a
live view for a result type (``register_view``); then the result displays as that widget, and
its mimebundle still carries the static HTML, which exported notebooks and reports show.
A front door may also register a richer static renderer (``register_static``: the widgets
inline their own view script and data); ``static_html()`` uses it and falls back to
``to_html()`` where none is registered.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

_VIEWS: dict[type, Callable[[Any], Any]] = {}


def register_view(result_type: type, factory: Callable[[Any], Any]) -> None:
    """Show ``result_type`` as ``factory(result)`` (a widget) wherever it is displayed."""
    _VIEWS[result_type] = factory


_STATIC: dict[type, Callable[[Any], str]] = {}


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


class Result:
    """Mixin for result dataclasses: ``to_html()``, ``save_html()``, rich display."""

    #: Set by a front door that already showed this result live (e.g. streamed it), so that
    #: being the cell's value does not draw it a second time.
    _shown_live: bool = False

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
        """Write a standalone offline HTML page of this result."""
        from llmlab.html import esc

        path = Path(path)
        title = title or type(self).__name__
        page = (
            f'<!doctype html><html><head><meta charset="utf-8"><title>{esc(title)}</title></head>'
            f"<body>{self.static_html()}</body></html>"
        )
        path.write_text(page, encoding="utf-8")
        return path

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        if self._shown_live:
            return {"text/plain": f"{self.summary()}  (shown above)"}
        # Widgets need a kernel-backed front end; a terminal IPython gets text.
        view = _live_view(self) if "ipykernel" in sys.modules else None
        if view is not None:
            return view._repr_mimebundle_(include=include, exclude=exclude)
        return {"text/plain": self.to_text(), "text/html": self.static_html()}
