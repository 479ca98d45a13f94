"""The base of every live view: an anywidget whose front-end is a real .js/.css file here,
and whose mimebundle also carries the result's static HTML for exports with no kernel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anywidget
import traitlets

HERE = Path(__file__).parent


class LabWidget(anywidget.AnyWidget):
    """Subclasses set ``_esm``/``_css`` to files in this folder and sync a ``payload`` dict."""

    payload = traitlets.Dict().tag(sync=True)

    def __init__(self, result: Any, **kwargs: Any) -> None:
        self.result = result
        super().__init__(payload=result.payload(), **kwargs)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        # Exported notebooks cannot run the widget offline; they fall back to this.
        data["text/html"] = self.result.to_html()
        return bundle
