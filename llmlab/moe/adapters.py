"""One small adapter per MoE family: where its sparse blocks live and how its router decides.

Every family transformers 5 ships builds its sparse block the same way: a router module
returns ``(router_logits, top_k_weights, top_k_index)`` and an experts module is called as
``experts(hidden_states, top_k_index, top_k_weights)``. Capture hooks that experts call, so it
records exactly the selection the layer computed with; the adapter only says where the block
is, what the family's rule is (for people and for the tests' reference computation), and
whether shared experts run beside the routed ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmlab.errors import LabError


@dataclass(frozen=True)
class FamilyAdapter:
    """Where a family keeps its sparse block and the words for its routing rule."""

    label: str
    block_attr: str  # attribute of a decoder layer holding the MoE block (or a dense MLP)
    router_attr: str  # attribute of the MoE block holding the router
    rule: str  # the routing rule, in words
    shared_experts: str = ""  # experts every token also runs through, in words

    def describe(self) -> str:
        return self.rule + (f"; plus {self.shared_experts}" if self.shared_experts else "")


SOFTMAX_RENORM = "softmax over experts → top-k → renormalised to sum 1"
SOFTMAX_NO_RENORM = "softmax over experts → top-k (weights not renormalised)"

ADAPTERS: dict[str, FamilyAdapter] = {
    "mixtral": FamilyAdapter("Mixtral", "mlp", "gate", SOFTMAX_RENORM),
    "qwen2_moe": FamilyAdapter(
        "Qwen2-MoE",
        "mlp",
        "gate",
        "softmax → top-k (renormalised if norm_topk_prob)",
        "a shared expert scaled by its own sigmoid gate",
    ),
    "qwen3_moe": FamilyAdapter(
        "Qwen3-MoE", "mlp", "gate", "softmax → top-k (renormalised if norm_topk_prob)"
    ),
    "olmoe": FamilyAdapter("OLMoE", "mlp", "gate", SOFTMAX_NO_RENORM),
    "granitemoe": FamilyAdapter(
        "GraniteMoE", "block_sparse_moe", "router", "top-k of the logits → softmax over those k"
    ),
    "deepseek_v3": FamilyAdapter(
        "DeepSeek-V3",
        "mlp",
        "gate",
        "sigmoid scores; choice uses scores + bias, limited to the best expert groups; "
        "weights are the unbiased scores of the chosen, renormalised, × routed_scaling_factor",
        "shared experts",
    ),
    "gpt_oss": FamilyAdapter(
        "GPT-OSS", "mlp", "router", "top-k of the logits (with router bias) → softmax over those k"
    ),
}


@dataclass
class MoeLayer:
    """One sparse block found in the model, at its true decoder-layer index."""

    index: int
    block: Any  # the MoE block module
    router: Any
    experts: Any


def decoder_layers(model: Any) -> list[Any]:
    """The decoder layers of a causal LM (``model.model.layers`` in every family here)."""
    base = getattr(model, "model", model)
    layers = getattr(base, "layers", None)
    if layers is None:
        text = getattr(base, "language_model", None)
        layers = getattr(text, "layers", None)
    return list(layers) if layers is not None else []


def adapter_for(model: Any) -> FamilyAdapter:
    """The family adapter of ``model``; a LabError in one line if it has no experts."""
    family = model.config.model_type
    adapter = ADAPTERS.get(family)
    if adapter is not None:
        if not moe_layers(model, adapter):
            raise LabError(f"this model has no experts ({family}, every layer is dense)")
        return adapter
    # An unlisted family may still follow the shared router/experts pattern: try it.
    for block_attr in ("mlp", "block_sparse_moe", "feed_forward"):
        for router_attr in ("gate", "router"):
            guess = FamilyAdapter(
                family, block_attr, router_attr, "as this family's router computes it"
            )
            if moe_layers(model, guess):
                return guess
    raise LabError(f"this model has no experts ({family} is a dense model)")


def moe_layers(model: Any, adapter: FamilyAdapter) -> list[MoeLayer]:
    """Every sparse block with its true layer index; dense layers in between are skipped."""
    found = []
    for index, layer in enumerate(decoder_layers(model)):
        block = getattr(layer, adapter.block_attr, None)
        router = getattr(block, adapter.router_attr, None)
        experts = getattr(block, "experts", None)
        if router is not None and experts is not None:
            found.append(MoeLayer(index, block, router, experts))
    return found


def routing_shape(layer: MoeLayer) -> tuple[int, int]:
    """``(number of routed experts, experts per token)`` read from the router module."""
    router = layer.router
    n_experts = getattr(router, "num_experts", None) or getattr(layer.experts, "num_experts", None)
    top_k = getattr(router, "top_k", None)
    if not n_experts or not top_k:
        raise LabError(f"cannot read the expert count or top-k of {type(router).__name__}")
    return int(n_experts), int(top_k)
