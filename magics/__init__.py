"""The IPython front door: ``%load_ext llmlab`` registers ``%llm`` / ``%%llm``.

Importable as ``llmlab.magics`` (this folder is mapped into the llmlab namespace).
"""

from __future__ import annotations

from typing import Any


def load_ipython_extension(ipython: Any) -> None:
    import llmlab.magics.commands  # noqa: F401  (registers every subcommand)
    import llmlab.widgets  # noqa: F401  (registers live views for results)
    from llmlab.magics.complete import register as register_completion
    from llmlab.magics.core import LlmMagics, full_help, keep_traceback

    # `%llm?` shows the function's docstring: make it the full, generated help.
    LlmMagics.llm.__doc__ = full_help()
    ipython.register_magics(LlmMagics)
    register_completion(ipython)  # Tab after %llm: subcommands, flags, model names, configs
    # A failure is shown in one line; this keeps its traceback for %tb.
    if keep_traceback not in ipython.events.callbacks["post_run_cell"]:
        ipython.events.register("post_run_cell", keep_traceback)
