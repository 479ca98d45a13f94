"""Importing this package registers every ``%llm`` subcommand (one module per feature)."""

from llmlab.magics.commands import generation, help, models  # noqa: F401
