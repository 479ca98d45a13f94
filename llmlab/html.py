"""Small helpers for the static HTML every result can render (reports, exported notebooks).

Everything a model produced is untrusted text: it goes through :func:`esc` before it touches
markup, so a token such as ``</script><script>`` stays inert.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
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


# -- plotly charts: plotly.js once per notebook or report, not once per chart ----------------

#: Marks the element that carries plotly.js, so a report keeps only one (llmlab.report).
PLOTLY_JS_MARK = "data-llmlab-plotlyjs"
_DATA = Path(__file__).parent / "data"
# The notebook cell whose output carries plotly.js in this kernel (see claim_plotly_js).
_plotly_cell: list[str | None] = [None]


def plotly_js() -> str:
    """plotly.js (4.8 MB) in a ``<script>`` that defines ``window.Plotly`` even on a page with
    an AMD loader (require.js would otherwise take it as a module and leave no global)."""
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    code = get_plotlyjs()
    assert "</script" not in code.lower()
    return (
        f'<script {PLOTLY_JS_MARK}="{esc(get_plotlyjs_version())}">'
        f"(function (define, module, exports) {{\n{code}\n}}).call(window);</script>"
    )


def plotly_chart(fig: Any, div_id: str, *, with_plotly_js: bool = True) -> str:
    """A plotly figure as HTML that needs no network: its JSON and a few lines that draw it
    once ``window.Plotly`` exists; ``with_plotly_js`` puts plotly.js itself in front (one
    per page is enough: the other charts of the page wait for it)."""
    import plotly.io as pio

    figure = json.loads(pio.to_json(fig, validate=False))
    figure["config"] = {"displaylogo": False, "responsive": True}
    loader = (_DATA / "plotly_chart.js").read_text("utf-8")
    return (
        (plotly_js() if with_plotly_js else "")
        + f'<div id="{esc(div_id)}" class="llmlab-plotly" style="height:100%;width:100%"></div>'
        f'<script type="application/json" id="{esc(div_id)}-figure">'
        f"{json_for_script(figure)}</script>"
        f'<script>{loader}\nllmlabPlot("{esc(div_id)}");</script>'
    )


def claim_plotly_js() -> bool:
    """Whether the output made now should carry plotly.js: in a notebook kernel only the
    first cell that draws a chart carries it (again when that cell runs again), so a sweep
    shown twice stores it once. Outside a kernel, or with no cell id, always."""
    cell = _current_cell_id()
    if cell is None:
        return True
    if _plotly_cell[0] in (None, cell):
        _plotly_cell[0] = cell
        return True
    return False


def _current_cell_id() -> str | None:
    import sys

    ip_module = sys.modules.get("IPython")
    shell = ip_module.get_ipython() if ip_module is not None else None
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return None
    try:
        parent = (
            kernel.get_parent("shell") if hasattr(kernel, "get_parent") else shell.parent_header
        )
    except Exception:  # noqa: BLE001 - an unknown front end: carry plotly.js every time
        return None
    cell = (parent or {}).get("metadata", {}).get("cellId")
    if cell:
        return str(cell)
    if not getattr(kernel, "_allow_stdin", True):
        # A headless run (nbclient, papermill) sends no cell ids but runs each cell once, in
        # order: its execution count names the cell.
        return f"run-{shell.execution_count}"
    return None
