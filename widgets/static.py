"""Offline copies of live views: the view's own anywidget module, inlined with its data.

An exported notebook or report has no kernel and, offline, no network. Instead of a reduced
rendering, :func:`static_view` writes the view's ES module, its model state and answers to a
bounded set of its requests into the page, and ``static_host.js`` runs the same ``render`` there
against a local stand-in for the anywidget model: layers, heads, tabs, sorting and hover work
as live; what needs the model says so in place. The engine's reduced ``to_html()`` copy is kept
inside as the fallback for viewers that run no script (and is removed once the view runs).

Everything is escaped for a ``<script>`` element by :func:`llmlab.html.json_for_script`, so model
text such as ``</script><script>`` stays data.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from llmlab.html import json_for_script

HERE = Path(__file__).parent

#: Default note when a view asks for something only the kernel can do.
NEEDS_KERNEL = "This offline copy cannot do that: it needs the running kernel (open the notebook)."
#: The error a view receives for a request whose answer is not in the page.
MISSING = "not in this offline copy (needs the running kernel)"


@cache
def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def request_key(request: dict[str, Any]) -> str:
    """The lookup key of a request: its fields minus ``id``, sorted (as ``static_host.js``)."""
    fields = {k: v for k, v in request.items() if k != "id"}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def prepared_replies(
    answer: Any, requests: Iterable[dict[str, Any]], budget_bytes: int
) -> dict[str, dict[str, Any]]:
    """Answer ``requests`` (most wanted first) with ``answer(request) -> (msg, buffers)`` until
    the answers' encoded size would pass ``budget_bytes``; failed answers are not kept."""
    replies: dict[str, dict[str, Any]] = {}
    used = 0
    for request in requests:
        msg, buffers = answer(request)
        if msg.get("error"):
            continue
        encoded = {
            "msg": {k: v for k, v in msg.items() if k != "id"},
            "buffers": [base64.b64encode(bytes(b)).decode("ascii") for b in buffers],
        }
        size = len(json.dumps(encoded, separators=(",", ":")))
        if used + size > budget_bytes:
            break
        used += size
        replies[request_key(request)] = encoded
    return replies


def source(code: Any) -> str:
    """The text of a view's ``_esm``/``_css``: a path, or anywidget's file-contents object."""
    return _read(code) if isinstance(code, Path) else str(code)


def static_view(
    esm: Any,
    css: Any | None,
    state: dict[str, Any],
    *,
    fallback_html: str = "",
    replies: dict[str, dict[str, Any]] | None = None,
    note: str = NEEDS_KERNEL,
) -> str:
    """Self-contained HTML that runs the anywidget module ``esm`` on ``state`` with no kernel.

    ``esm``/``css``: the view's module and style (see :func:`source`); ``replies``: from
    :func:`prepared_replies`; ``note``: shown when the view asks for what needs the kernel.
    """
    host = _read(HERE / "static_host.js")
    # Our own scripts go in verbatim; they must not end their element early.
    assert "</script" not in host.lower()
    view_id = f"llmlab-static-{uuid.uuid4().hex}"
    data = {
        "esm": source(esm),
        # Applied inside the view's shadow root only (static_host.js): the page's CSS does not
        # reach the view, and the view's CSS does not reach the page.
        "css": source(css) if css else "",
        "state": state,
        "replies": replies or {},
        "note": note,
        "missing": MISSING,
    }
    return (
        f'<div class="llmlab-static" id="{view_id}">'
        f'<div class="llmlab-static-fallback">{fallback_html}</div>'
        '<div class="llmlab-static-view" style="display:none"></div>'
        '<div class="llmlab-static-note" style="display:none;color:#9a6700;font:12px system-ui,'
        'sans-serif;margin:4px 0"></div>'
        f'<script type="application/json" class="llmlab-static-data">{json_for_script(data)}'
        "</script>"
        f'<script type="module">{host}\nhostWhenShown(document.getElementById("{view_id}"));'
        "</script></div>"
    )


def offline_copy(uid: str, inner_html: str) -> str:
    """The output that stands beside live view ``uid``: ``inner_html`` (its offline copy),
    shown where no live view of that id is on the page (``copy_host.js`` decides, in the page:
    a notebook reopened without the widget's model, an exported report)."""
    settle = _read(HERE / "copy_host.js")
    assert "</script" not in settle.lower()
    copy_id = f"llmlab-copy-{uuid.uuid4().hex}"
    return (
        f'<div class="llmlab-copy" id="{copy_id}" data-llmlab-for="{uid}">{inner_html}'
        f'<script type="module">{settle}\nconst copy = document.getElementById("{copy_id}");\n'
        "settleCopy(copy, () => { copy.dataset.llmlabOffline = '1';"
        ' copy.dispatchEvent(new Event("llmlab:offline")); });</script></div>'
    )
