"""``%llm accel list``: the acceleration registry as a table nothing truncates.

pandas' notebook display cuts every cell at 50 characters, and the reasons a value cannot run
here are the longest cells; so the table renders its own HTML (cells wrap) and plain text
(one block per acceleration), and ``to_pandas()`` still gives the frame.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmlab.html import card, esc
from llmlab.results import Result

if TYPE_CHECKING:
    import pandas as pd

_CSS = """
.llmlab-ac-list td{white-space:normal;max-width:260px}
.llmlab-ac-list td:first-child{font-weight:600}
.llmlab-ac-list code{font-size:11px}
"""


@dataclass(repr=False)
class AccelTable(Result):
    """Rows of :func:`llmlab.accel.table` for one model (or the machine in general)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None

    def summary(self) -> str:
        where = f" for {self.model}" if self.model else ""
        return f"AccelTable({len(self.rows)} accelerations{where})"

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rows).set_index("name")

    def to_text(self) -> str:
        lines = [self.summary()]
        for r in self.rows:
            lines.append(f"{r['name']}: {r['values']}")
            for key in ("changes", "output-preserving", "applied", "needs", "here"):
                wrapped = textwrap.wrap(f"{key}: {r[key]}", 96)
                lines += ["  " + w for w in wrapped]
        return "\n".join(lines)

    def to_html(self) -> str:
        if not self.rows:
            return card("no accelerations registered")
        keys = list(self.rows[0])
        head = "".join(f"<th>{esc(k)}</th>" for k in keys)
        body = []
        for r in self.rows:
            cells = [f"<td>{esc(r[k])}</td>" for k in keys]
            body.append(f"<tr>{''.join(cells)}</tr>")
        where = f" · availability for <code>{esc(self.model)}</code>" if self.model else ""
        return card(
            f"<div><b>Accelerations</b>{where}</div>"
            f'<table class="llmlab-ac-list"><tr>{head}</tr>{"".join(body)}</table>',
            css=_CSS,
        )
