"""Small helpers for the static HTML every result can render (reports, exported notebooks).

Everything a model produced is untrusted text: it goes through :func:`esc` before it touches
markup, so a token such as ``</script><script>`` stays inert.
"""

from __future__ import annotations

import html
import json
from typing import Any

CARD_CSS = """
.llmlab-card{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;font-size:13px;
  border:1px solid #d0d7de;border-radius:8px;padding:10px 12px;margin:4px 0;max-width:900px;
  background:#fff;color:#1f2328}
.llmlab-card .llmlab-text{white-space:pre-wrap;font-family:ui-monospace,Menlo,monospace;
  font-size:13px;line-height:1.45}
.llmlab-card .llmlab-prompt{color:#57606a}
.llmlab-card .llmlab-stats{margin-top:8px;color:#57606a;font-size:12px;border-top:1px solid #eaeef2;
  padding-top:6px}
.llmlab-card table{border-collapse:collapse;font-size:12px}
.llmlab-card th,.llmlab-card td{padding:2px 8px;text-align:left!important;
  border-bottom:1px solid #eaeef2;vertical-align:top}
.llmlab-card .llmlab-best{background:#ddf4ff}
.llmlab-card .llmlab-note{color:#9a6700;font-size:12px}
"""


def esc(text: Any) -> str:
    """Escape text for HTML element content and attribute values."""
    return html.escape(str(text), quote=True)


def json_for_script(data: Any) -> str:
    """JSON that is safe inside a ``<script>`` element (no ``</script>`` or ``<!--`` breakout)."""
    return (
        json.dumps(data, separators=(",", ":"))
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )


def card(body: str, *, css: str = "") -> str:
    """Wrap trusted markup (built with :func:`esc`) in a styled, self-contained card."""
    return f'<div class="llmlab-card"><style>{CARD_CSS}{css}</style>{body}</div>'
