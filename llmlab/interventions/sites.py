"""Where an intervention acts in a model: decoder layers, each layer's attention output
projection (the head outputs enter it side by side), MoE routers, experts and blocks.

The family tables are the ones attention and MoE capture use (``llmlab.attention.adapters``
says which layers have attention, ``llmlab.moe.adapters`` where a family keeps its router);
this module only adds the one fact interventions need beyond them: the output projection that
reads the concatenated heads, found by name inside each layer's attention module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from llmlab.attention import adapters as attention_tables
from llmlab.errors import LabError
from llmlab.moe import adapters as moe_tables

if TYPE_CHECKING:
    from llmlab.models.loaded import LoadedModel

#: Attention modules inside a decoder layer, by attribute name (most families first).
ATTENTION_ATTRS = ("self_attn", "attn", "attention", "self_attention", "mixer")
#: The projection that reads the concatenated head outputs, by attribute name.
OUTPUT_ATTRS = ("o_proj", "out_proj", "dense", "c_proj", "o", "wo", "proj")


@dataclass
class AttentionSite:
    layer: int
    module: Any  # the attention module
    output: Any  # its output projection: input (batch, tokens, heads × head_dim)


@dataclass
class ModelSites:
    """The places of one model that interventions hook, found once per model."""

    family: str
    layers: list[Any]  # decoder layers, in order
    n_heads: int
    head_dim: int
    width: int  # residual stream width (hidden size)
    attention: dict[int, AttentionSite]  # layer -> site, for layers with attention heads
    kinds: list[str]  # per layer, in words ("attention", "Mamba-2", ...)
    moe: list[Any] = field(default_factory=list)  # llmlab.moe.adapters.MoeLayer
    moe_adapter: Any = None
    n_experts: int = 0
    top_k: int = 0
    attention_note: str = ""  # why this family has no head interventions ("" when it has)
    #: Whether a pass's batch may grow inside the model, rows joining at their own layer
    #: (False for families that build per-row tensors up front: Bloom's ALiBi biases).
    can_expand: bool = True

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @cached_property
    def moe_by_layer(self) -> dict[int, Any]:
        return {m.index: m for m in self.moe}

    # -- one-line checks ----------------------------------------------------------------------
    def check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.n_layers:
            raise LabError(f"layer {layer} is out of range: layers 0-{self.n_layers - 1}")

    def check_head(self, layer: int, head: int) -> None:
        self.check_layer(layer)
        if self.attention_note:
            raise LabError(self.attention_note)
        if layer not in self.attention:
            raise LabError(
                f"layer {layer} is {self.kinds[layer]}: it has no attention heads "
                f"(layers with heads: {span(sorted(self.attention))})"
            )
        if not 0 <= head < self.n_heads:
            raise LabError(f"head {head} is out of range: heads 0-{self.n_heads - 1}")

    def check_moe(self, layer: int | None = None, expert: int | None = None) -> None:
        if not self.moe:
            raise LabError(f"this model has no experts ({self.family} is a dense model)")
        if layer is not None and layer not in self.moe_by_layer:
            raise LabError(f"layer {layer} is not a MoE layer; MoE layers: {span(self.moe_layers)}")
        if expert is not None and not 0 <= expert < self.n_experts:
            raise LabError(f"expert {expert} is out of range: experts 0-{self.n_experts - 1}")

    @property
    def moe_layers(self) -> list[int]:
        return [m.index for m in self.moe]

    @property
    def head_layers(self) -> list[int]:
        return sorted(self.attention)


def span(values: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"."""
    if not values:
        return "none"
    parts, start, prev = [], values[0], values[0]
    for v in values[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(f"{start}-{prev}" if prev > start else str(start))
        if v is not None:
            start = prev = v
    return ", ".join(parts)


def _text_config(config: Any) -> Any:
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _output_projection(attn: Any) -> Any | None:
    for name in OUTPUT_ATTRS:
        module = getattr(attn, name, None)
        # A weight, or an input width (quantized replacements keep in_features, not weight).
        if module is not None and (hasattr(module, "weight") or hasattr(module, "in_features")):
            return module
    return None


def _in_features(module: Any) -> int | None:
    value = getattr(module, "in_features", None)
    if isinstance(value, int):
        return value
    weight = getattr(module, "weight", None)
    if type(module).__name__ == "Conv1D" and weight is not None:  # GPT-2: weight is (in, out)
        return int(weight.shape[0])
    return int(weight.shape[1]) if hasattr(weight, "shape") and len(weight.shape) == 2 else None


_CACHE: dict[int, ModelSites] = {}


def sites_of(lm: LoadedModel | Any) -> ModelSites:
    """The intervention sites of ``lm`` (a LoadedModel or a transformers model), found once."""
    model = getattr(lm, "model", lm)
    key = id(model)
    cached = _CACHE.get(key)
    if cached is not None and cached.layers and cached.layers[0] is _first_layer(model):
        return cached
    found = _find(model)
    _CACHE[key] = found
    return found


def decoder_layers(model: Any) -> list[Any]:
    """The MoE tables' search (``model.layers``, ``transformer.h``, ...), then the model's
    own base model (``gpt_neox.layers``: its prefix is the family's name)."""
    layers = moe_tables.decoder_layers(model)
    if layers:
        return layers
    base = getattr(model, "base_model", None)
    for attr in ("layers", "h", "blocks"):
        found = getattr(base, attr, None)
        if found is not None and hasattr(found, "__len__"):
            return list(found)
    return []


def _first_layer(model: Any) -> Any:
    layers = decoder_layers(model)
    return layers[0] if layers else None


def _find(model: Any) -> ModelSites:
    family = model.config.model_type
    if getattr(model.config, "is_encoder_decoder", False):
        raise LabError(
            f"interventions work on decoder-only models; {family!r} is an encoder-decoder model"
        )
    layers = decoder_layers(model)
    if not layers:
        raise LabError(f"cannot find the decoder layers of the {family!r} family")
    text = _text_config(model.config)
    n_heads = int(getattr(text, "num_attention_heads", 0) or getattr(text, "n_head", 0) or 0)
    kinds = attention_tables.layer_kinds(model.config, family, len(layers))
    attention: dict[int, AttentionSite] = {}
    head_dim = 0
    for index, (layer, (_kind, has)) in enumerate(zip(layers, kinds, strict=True)):
        if not has:
            continue
        attn = next((getattr(layer, a) for a in ATTENTION_ATTRS if hasattr(layer, a)), None)
        out = _output_projection(attn) if attn is not None else None
        width = _in_features(out) if out is not None else None
        if out is None or not n_heads or not width or width % n_heads:
            continue
        head_dim = head_dim or width // n_heads
        attention[index] = AttentionSite(index, attn, out)
    note = ""
    if not any(has for _, has in kinds):
        note = (
            f"the {family!r} family has no attention heads (its layers are "
            f"{' and '.join(sorted({k for k, _ in kinds}))})"
        )
    elif not attention:
        note = (
            f"cannot intervene on heads of the {family!r} family: its attention modules have no "
            f"output projection named {', '.join(OUTPUT_ATTRS)} reading the heads side by side"
        )
    sites = ModelSites(
        family=family,
        layers=layers,
        n_heads=n_heads,
        head_dim=head_dim,
        width=int(getattr(text, "hidden_size", 0) or getattr(text, "n_embd", 0) or 0),
        attention=attention,
        kinds=[k for k, _ in kinds],
        attention_note=note,
    )
    try:
        adapter = moe_tables.adapter_for(model)
    except LabError:
        return sites
    sites.moe_adapter = adapter
    sites.moe = moe_tables.moe_layers(model, adapter)
    if sites.moe:
        sites.n_experts, sites.top_k = moe_tables.routing_shape(sites.moe[0], model.config)
    return sites
