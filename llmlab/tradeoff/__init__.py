"""Quality / latency / cost tradeoff sweeps over acceleration configurations.

::

    from llmlab.tradeoff import run_sweep
    sweep = run_sweep(lm, "baseline,kv=off,quant=int8,spec=prompt-lookup,bf16")
    sweep.to_pandas(); sweep.save_html("tradeoffs.html"); sweep.compare(other)
"""

from llmlab.tradeoff.axes import X_AXES, Y_AXES, parse_axes
from llmlab.tradeoff.compare import SweepComparison, compare_sweeps
from llmlab.tradeoff.configs import Configuration, resolve_configs, split_configs
from llmlab.tradeoff.render import build_figure, pareto_front
from llmlab.tradeoff.result import (
    APPROXIMATING,
    KL_PRESERVING,
    PRESERVING,
    Sweep,
    SweepPoint,
)
from llmlab.tradeoff.runner import default_prompts, read_prompts, run_sweep

__all__ = [
    "APPROXIMATING",
    "KL_PRESERVING",
    "PRESERVING",
    "X_AXES",
    "Y_AXES",
    "Configuration",
    "Sweep",
    "SweepComparison",
    "SweepPoint",
    "build_figure",
    "compare_sweeps",
    "default_prompts",
    "pareto_front",
    "parse_axes",
    "read_prompts",
    "resolve_configs",
    "run_sweep",
    "split_configs",
]
