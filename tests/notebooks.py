"""Execute example notebooks headless, as the README's demo command does."""

from __future__ import annotations

from pathlib import Path

import nbformat

from llmlab.report import execute

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def execute_notebook(path: Path, timeout: int = 900) -> nbformat.NotebookNode:
    """Run every cell (in the notebook's folder, so relative paths work); raise on any error."""
    return execute(path, timeout=timeout)


def outputs_text(nb: nbformat.NotebookNode) -> str:
    """All text and HTML the executed notebook shows, joined (for assertions)."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "text" in out:
                parts.append(out["text"])
            for mime in ("text/plain", "text/html"):
                value = out.get("data", {}).get(mime)
                if value:
                    parts.append(value if isinstance(value, str) else "".join(value))
    return "\n".join(parts)
