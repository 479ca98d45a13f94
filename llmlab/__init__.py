"""llmlab: see and measure large language models from a notebook.

``%load_ext llmlab`` adds the ``%llm`` magics; ``from llmlab import Lab`` is the same engine in
plain Python. Importing llmlab is cheap: torch and transformers load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "GenerationResult",
    "GenerationSettings",
    "Lab",
    "LabError",
    "NextTokenDistribution",
    "default_lab",
    "load_model",
]

_LAZY = {
    "Lab": "llmlab.session",
    "default_lab": "llmlab.session",
    "LabError": "llmlab.errors",
    "GenerationSettings": "llmlab.generation.settings",
    "GenerationResult": "llmlab.generation.result",
    "NextTokenDistribution": "llmlab.generation.next_token",
    "load_model": "llmlab.models.registry",
}

if TYPE_CHECKING:
    from llmlab.errors import LabError
    from llmlab.generation.next_token import NextTokenDistribution
    from llmlab.generation.result import GenerationResult
    from llmlab.generation.settings import GenerationSettings
    from llmlab.models.registry import load_model
    from llmlab.session import Lab, default_lab


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'llmlab' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext llmlab``."""
    from llmlab.magics import load_ipython_extension as load

    load(ipython)
