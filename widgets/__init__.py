"""The visual front door: live anywidget views of engine results.

Importing it registers each view with the engine (``llmlab.results.register_view``), so a
result displays as its widget, with a static HTML fallback for exported notebooks.
Importable as ``llmlab.widgets``.
"""

from llmlab.widgets import accel as _accel  # noqa: F401  (registers the accel panel)
from llmlab.widgets import attention as _attention  # noqa: F401  (registers its view)
from llmlab.widgets import drafts as _drafts  # noqa: F401  (registers the drafts view)
from llmlab.widgets import interventions as _interventions  # noqa: F401  (registers its views)
from llmlab.widgets import lens as _lens  # noqa: F401  (registers the logit-lens view)
from llmlab.widgets import loadtest as _loadtest  # noqa: F401  (registers the load-test view)
from llmlab.widgets import marimo_views as _marimo_views  # noqa: F401  (views for marimo)
from llmlab.widgets import moe as _moe  # noqa: F401  (registers the MoE routing view)
from llmlab.widgets import tradeoff as _tradeoff  # noqa: F401  (registers the sweep view)
from llmlab.widgets.next_token import NextTokenView

from llmlab.generation.next_token import NextTokenDistribution

NextTokenView.register(NextTokenDistribution)

__all__ = ["NextTokenView"]
