"""Helpers shared by tests."""

from __future__ import annotations


def run_magic(shell, line: str, cell: str | None = None):
    """Run `%llm LINE` (or `%%llm LINE` with a cell body) and return its value."""
    if cell is None:
        return shell.run_line_magic("llm", line)
    return shell.run_cell_magic("llm", line, cell)
