"""Mixture-of-experts routing: record which experts every token went to, and measure it.

from llmlab.moe import capture_routing
routing = capture_routing(lm, "def fib(n): ...")          # MoeRouting
routing.to_pandas(); routing.load_table(); routing.specialisation()
routing.save_html("routing.html")

from llmlab.moe import train_moe_demo                     # the demo MoE, trained live
run = train_moe_demo(background=True); run.stop(); run.loaded()
"""

from llmlab.models.moe_demo import DemoRecipe
from llmlab.moe.adapters import ADAPTERS, FamilyAdapter, adapter_for, moe_layers
from llmlab.moe.capture import capture_routing, compare_routing
from llmlab.moe.recording import recording
from llmlab.moe.result import MoeRouting, RoutedInput
from llmlab.moe.training import MoeTrainingRun, train_moe_demo

__all__ = [
    "ADAPTERS",
    "DemoRecipe",
    "FamilyAdapter",
    "MoeRouting",
    "MoeTrainingRun",
    "RoutedInput",
    "adapter_for",
    "capture_routing",
    "compare_routing",
    "moe_layers",
    "recording",
    "train_moe_demo",
]
