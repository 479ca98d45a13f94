"""One small adapter per MoE family: where its sparse blocks live and how its router decides.

Almost every family transformers 5 ships builds its sparse block the same way: a router module
returns ``(router_logits, top_k_weights, top_k_index)`` (or only logits, turned into a choice
by the block) and an experts module is called as ``experts(hidden_states, top_k_index,
top_k_weights)``. Capture hooks that experts call, so it records exactly the selection the
layer computed with. Two families decide elsewhere, and their adapter says how to read the
choice from the router's own output instead:

- Llama-4 runs *every* expert on every token, each on the token scaled by its gate score
  (0 for the experts not in the top-k), so its experts module sees no indices;
- JetMoE's router returns the token/expert assignment sorted by expert (for its parallel
  experts kernel); its attention is a mixture too (MoA), with its own router per layer.

The adapter also says where the block is, the family's rule in words (for people and for the
tests' reference computation), and whether shared experts run beside the routed ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmlab.errors import LabError

# (router module, its forward output, top_k) -> (top_k_index, top_k_weights), each (tokens, k)
RouterReader = Callable[[Any, Any, int], tuple[Any, Any]]


@dataclass(frozen=True)
class FamilyAdapter:
    """Where a family keeps its sparse block and the words for its routing rule."""

    label: str
    block_attr: str  # attribute of a decoder layer holding the MoE block (or a dense MLP)
    router_attr: str  # attribute of the MoE block holding the router
    rule: str  # the routing rule, in words
    shared_experts: str = ""  # experts every token also runs through, in words
    experts_attr: str = "experts"  # attribute of the block holding the routed experts
    # When set, the choice is read from the router's output by this function instead of from
    # the experts call (families whose experts module never sees the indices).
    read_router: RouterReader | None = None
    note: str = ""  # what the recorded routing leaves out, in words

    def describe(self) -> str:
        text = self.rule + (f"; plus {self.shared_experts}" if self.shared_experts else "")
        return text + (f" ({self.note})" if self.note else "")


def _llama4_choice(router: Any, output: Any, top_k: int) -> tuple[Any, Any]:
    # Llama4Router returns (scores, logits): scores are sigmoid(logit) for the top-k and 0
    # elsewhere. Its top-k is torch.topk of the logits, recomputed here exactly as it did.
    scores, logits = output
    index = logits.topk(top_k, dim=1).indices
    return index, scores.gather(1, index)


def _jetmoe_choice(router: Any, output: Any, top_k: int) -> tuple[Any, Any]:
    # JetMoeTopKGating returns the flattened (token, rank) slots sorted by expert: slot
    # positions, their token, their gate, and how many slots each expert got. Undo the sort.
    import torch

    sorted_slots, _, gates, expert_size, logits = output
    n_tokens = logits.shape[0]
    experts = torch.repeat_interleave(
        torch.arange(len(expert_size), device=sorted_slots.device),
        torch.as_tensor(expert_size, device=sorted_slots.device),
    )
    index = torch.empty(n_tokens * top_k, dtype=torch.long, device=sorted_slots.device)
    weights = torch.empty(n_tokens * top_k, dtype=gates.dtype, device=gates.device)
    index[sorted_slots] = experts
    weights[sorted_slots] = gates
    return index.view(n_tokens, top_k), weights.view(n_tokens, top_k)


SOFTMAX_RENORM = "softmax over experts → top-k → renormalised to sum 1"
SOFTMAX_MAYBE_RENORM = "softmax → top-k (renormalised if norm_topk_prob)"
SOFTMAX_NO_RENORM = "softmax over experts → top-k (weights not renormalised)"
TOPK_SOFTMAX = "top-k of the logits → softmax over those k"
SIGMOID_GROUPED = (
    "sigmoid scores; choice uses scores + bias, limited to the best expert groups; "
    "weights are the unbiased scores of the chosen (renormalised if norm_topk_prob) "
    "× routed_scaling_factor"
)

ADAPTERS: dict[str, FamilyAdapter] = {
    "mixtral": FamilyAdapter("Mixtral", "mlp", "gate", SOFTMAX_RENORM),
    "minimax": FamilyAdapter("MiniMax", "mlp", "gate", SOFTMAX_RENORM),
    "qwen2_moe": FamilyAdapter(
        "Qwen2-MoE",
        "mlp",
        "gate",
        SOFTMAX_MAYBE_RENORM,
        "a shared expert scaled by its own sigmoid gate",
    ),
    "qwen3_moe": FamilyAdapter("Qwen3-MoE", "mlp", "gate", SOFTMAX_MAYBE_RENORM),
    "qwen3_next": FamilyAdapter(
        "Qwen3-Next",
        "mlp",
        "gate",
        SOFTMAX_MAYBE_RENORM,
        "a shared expert scaled by its own sigmoid gate",
    ),
    "olmoe": FamilyAdapter("OLMoE", "mlp", "gate", SOFTMAX_NO_RENORM),
    "flex_olmo": FamilyAdapter("FlexOlmo", "mlp", "gate", SOFTMAX_MAYBE_RENORM),
    "hunyuan_v1_moe": FamilyAdapter("Hunyuan-MoE", "mlp", "gate", SOFTMAX_RENORM),
    "granitemoe": FamilyAdapter("GraniteMoE", "block_sparse_moe", "router", TOPK_SOFTMAX),
    "granitemoeshared": FamilyAdapter(
        "GraniteMoE-Shared", "block_sparse_moe", "router", TOPK_SOFTMAX, "a shared MLP"
    ),
    "granitemoehybrid": FamilyAdapter(
        "GraniteMoE-Hybrid", "block_sparse_moe", "router", TOPK_SOFTMAX, "a shared MLP"
    ),
    "phimoe": FamilyAdapter(
        "PhiMoE",
        "mlp",
        "router",
        "sparsemixer: the best expert, then the best of the rest, each weighted by a softmax "
        "over the logits within a margin of it",
    ),
    "dbrx": FamilyAdapter(
        "DBRX",
        "ffn",
        "router",
        "softmax → top-k → renormalised (p-norm, moe_normalize_expert_weights)",
    ),
    "deepseek_v2": FamilyAdapter(
        "DeepSeek-V2",
        "mlp",
        "gate",
        "softmax → top-k (greedy, or within the best expert groups) × routed_scaling_factor",
        "shared experts",
    ),
    "deepseek_v3": FamilyAdapter("DeepSeek-V3", "mlp", "gate", SIGMOID_GROUPED, "shared experts"),
    "glm4_moe": FamilyAdapter("GLM-4-MoE", "mlp", "gate", SIGMOID_GROUPED, "shared experts"),
    "dots1": FamilyAdapter("dots.llm1", "mlp", "gate", SIGMOID_GROUPED, "shared experts"),
    "nemotron_h": FamilyAdapter("Nemotron-H", "mixer", "gate", SIGMOID_GROUPED, "shared experts"),
    "ernie4_5_moe": FamilyAdapter(
        "ERNIE-4.5-MoE",
        "mlp",
        "gate",
        "softmax; choice by probability + a learned bias (moe_statics); weights are the "
        "unbiased probabilities of the chosen, renormalised",
        "shared experts",
    ),
    "longcat_flash": FamilyAdapter(
        "LongCat-Flash",
        "mlp",
        "router",
        "softmax → top-k (choice uses + bias) × routed_scaling_factor; experts past the "
        "routed ones are zero-computation (identity) experts",
    ),
    "gpt_oss": FamilyAdapter(
        "GPT-OSS", "mlp", "router", "top-k of the logits (with router bias) → softmax over those k"
    ),
    "llama4": FamilyAdapter(
        "Llama-4",
        "feed_forward",
        "router",
        "top-k of the logits → sigmoid of each; the score scales the expert's input, and every "
        "expert runs on every token (0 input for those not chosen)",
        "a shared expert",
        read_router=_llama4_choice,
    ),
    "jetmoe": FamilyAdapter(
        "JetMoE",
        "mlp",
        "router",
        TOPK_SOFTMAX,
        experts_attr="input_linear",
        read_router=_jetmoe_choice,
        note="feed-forward experts; the attention's own mixture of heads (MoA) routes separately",
    ),
}
ADAPTERS["llama4_text"] = ADAPTERS["llama4"]

# Families not listed above are tried with these places, in order (the shared pattern).
_GUESS_BLOCKS = ("mlp", "block_sparse_moe", "feed_forward", "ffn", "mixer", "moe")
_GUESS_ROUTERS = ("gate", "router")


@dataclass
class MoeLayer:
    """One sparse block found in the model, at its true decoder-layer index."""

    index: int
    block: Any  # the MoE block module
    router: Any
    experts: Any


def decoder_layers(model: Any) -> list[Any]:
    """The decoder layers of a causal LM: ``model.model.layers`` in most families,
    ``model.transformer.blocks`` in DBRX, ``language_model.layers`` in multimodal wrappers."""
    for base in (getattr(model, "model", None), getattr(model, "transformer", None), model):
        if base is None:
            continue
        for holder in (base, getattr(base, "language_model", None)):
            for attr in ("layers", "blocks", "h"):
                layers = getattr(holder, attr, None) if holder is not None else None
                if layers is not None and hasattr(layers, "__len__"):
                    return list(layers)
    return []


def adapter_for(model: Any) -> FamilyAdapter:
    """The family adapter of ``model``; a LabError in one line if it has no experts."""
    family = model.config.model_type
    adapter = ADAPTERS.get(family)
    if adapter is not None:
        if not moe_layers(model, adapter):
            raise LabError(f"this model has no experts ({family}, every layer is dense)")
        return adapter
    # An unlisted family may still follow the shared router/experts pattern: try it.
    for block_attr in _GUESS_BLOCKS:
        for router_attr in _GUESS_ROUTERS:
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
        experts = getattr(block, adapter.experts_attr, None)
        if router is not None and experts is not None:
            found.append(MoeLayer(index, block, router, experts))
    return found


_EXPERT_COUNTS = ("total_experts", "num_experts", "n_routed_experts", "num_local_experts")
_TOP_K = ("top_k", "num_experts_per_tok", "moe_top_k", "moe_topk")


def routing_shape(layer: MoeLayer, config: Any = None) -> tuple[int, int]:
    """``(number of experts a token can be routed to, experts per token)``, read from the
    router, the experts and the block, then the config (names differ by family). Zero-
    computation experts (LongCat) count: they can be chosen."""
    modules = (layer.router, layer.experts, layer.block)
    counts = [getattr(m, a, None) for m in modules for a in _EXPERT_COUNTS]
    top_ks = [getattr(m, a, None) for m in modules for a in _TOP_K]
    if config is not None:
        text = getattr(config, "get_text_config", lambda: config)()
        counts += [getattr(text, a, None) for a in _EXPERT_COUNTS + ("moe_num_experts",)]
        top_ks += [getattr(text, a, None) for a in _TOP_K]
        ffn = getattr(text, "ffn_config", None)  # DBRX keeps them in a sub-config
        counts.append(getattr(ffn, "moe_num_experts", None))
        top_ks.append(getattr(ffn, "moe_top_k", None))
    counts = [int(c) for c in counts if isinstance(c, int) and c > 0]
    top_ks = [int(k) for k in top_ks if isinstance(k, int) and k > 0]
    if not counts or not top_ks:
        raise LabError(f"cannot read the expert count or top-k of {type(layer.router).__name__}")
    return max(counts), top_ks[0]
