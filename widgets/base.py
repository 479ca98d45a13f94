"""The base of every live view: an anywidget whose front-end is a real .js/.css file here,
and whose mimebundle also carries an offline copy of itself for exports with no kernel."""

from __future__ import annotations

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
        state = {n: getattr(self, n) for n in self._view_traits()}
        return self.render_static(self.result, state)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        # Exported notebooks cannot run the widget with the kernel; they run this copy.
        data["text/html"] = self.static_html()
        return bundle


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
