"""Mixture-of-experts routing: record which experts every token went to, and measure it.

from llmlab.moe import capture_routing
routing = capture_routing(lm, "def fib(n): ...")          # MoeRouting
routing.to_pandas(); routing.load_table(); routing.save_html("routing.html")
"""

from llmlab.moe.adapters import ADAPTERS, FamilyAdapter, adapter_for, moe_layers
from llmlab.moe.capture import capture_routing, recording
from llmlab.moe.result import MoeRouting, RoutedInput

__all__ = [
    "ADAPTERS",
    "FamilyAdapter",
    "MoeRouting",
    "RoutedInput",
    "adapter_for",
    "capture_routing",
    "moe_layers",
    "recording",
]
