"""The prompts a measurement runs when the user gives none, and how a prompt file is read
(tradeoff sweeps and load tests share them)."""

from __future__ import annotations

from importlib import resources


def default_prompts() -> list[str]:
    """Four short prompts that ship with llmlab (one per line in ``data/prompts.txt``)."""
    text = resources.files("llmlab").joinpath("data", "prompts.txt").read_text("utf-8")
    return read_prompts(text)


def read_prompts(text: str) -> list[str]:
    """One prompt per non-blank line."""
    return [line.strip() for line in text.splitlines() if line.strip()]
