"""Importing this package registers every ``%llm`` subcommand (one module per feature)."""

from llmlab.magics.commands import attention, generation, help, models, moe  # noqa: F401
