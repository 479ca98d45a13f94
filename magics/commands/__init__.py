"""Importing this package registers every ``%llm`` subcommand (one module per feature)."""

from llmlab.magics.commands import (  # noqa: F401
    accel,
    attention,
    generation,
    help,
    interventions,
    lens,
    loadtest,
    models,
    moe,
    serve,
    tradeoff,
)
