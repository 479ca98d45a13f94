"""Views for marimo where the Jupyter one cannot run there.

marimo runs anywidgets (every :class:`~llmlab.widgets.base.LabWidget` view displays live as it
is), but not composites of ipywidgets such as the tradeoff and load-test views, and it does
not run a text/html output's inline scripts (the offline page's chart stayed blank). These
give marimo the same figure and tables, the figure drawn by marimo's own plotly.
"""

from __future__ import annotations

from typing import Any

from llmlab.html import card
from llmlab.results import register_marimo_view


def sweep_view(sweep: Any) -> Any:
    """A finished (or stopped) sweep: header, the plotly figure, the table, a point's texts."""
    import marimo as mo

    from llmlab.tradeoff.render import (
        TABLE_CSS,
        build_figure,
        compare_html,
        first_other_point,
        header_html,
        table_html,
    )

    return mo.vstack(
        [
            mo.Html(card(header_html(sweep))),
            build_figure(sweep, sweep.axes),
            mo.Html(card(table_html(sweep), css=TABLE_CSS)),
            mo.Html(card(compare_html(sweep, first_other_point(sweep)), css=TABLE_CSS)),
        ]
    )


def load_test_view(test: Any) -> Any:
    """A load test: header, latency against throughput per level, the percentile table."""
    import marimo as mo

    from llmlab.served.render import build_figure, header_html, table_html

    return mo.vstack(
        [mo.Html(card(header_html(test))), build_figure(test), mo.Html(card(table_html(test)))]
    )


def _register() -> None:
    from llmlab.served.loadtest import LoadTest
    from llmlab.tradeoff.result import Sweep

    register_marimo_view(Sweep, sweep_view)
    register_marimo_view(LoadTest, load_test_view)


_register()
