"""The README's first session pastes cell by cell: each fenced block is one valid cell."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from IPython.core.inputtransformer2 import TransformerManager

README = Path(__file__).resolve().parent.parent / "README.md"


def _first_session_cells() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## A first session", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, re.S)
    # Output blocks (plain fences that are not a cell magic) show what the cell printed.
    return [body for lang, body in blocks if lang == "python" or body.startswith("%%")]


def test_first_session_blocks_are_single_cells():
    cells = _first_session_cells()
    assert len(cells) >= 4
    for cell in cells:
        assert "%%" not in cell.split("\n", 1)[-1] or cell.startswith("%%"), cell
        if not cell.startswith("%%"):
            ast.parse(TransformerManager().transform_cell(cell))  # no SyntaxError when pasted
        # No cell ends on a bare expression that would echo a long value (token id lists).
        last = cell.strip().splitlines()[-1]
        assert "token_ids" not in last or last.startswith(("print", "r =")), last


def test_speed_figures_say_where_they_were_measured():
    section = README.read_text(encoding="utf-8").split("## A first session", 1)[1]
    assert "tok/s" in section and re.search(r"measured|Figures from", section)
