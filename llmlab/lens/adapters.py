"""How each family turns its last residual stream into logits: the lens reads every layer the
same way.

A logit lens reads layer ``i``'s residual stream ``h_i`` as the model reads its last one:
``logits_i = post(unembed(final_norm(h_i)))``. Most families need nothing but the generic search
below (the final norm under one of :data:`NORM_NAMES`, ``get_output_embeddings()`` as the
unembedding). What differs by family lives in two small tables: :data:`NORM_PATHS` (a final norm
the search would not find) and :data:`LOGIT_TRANSFORMS` (what a family does to its logits after
the unembedding: soft-capping, scaling). Every lens checks itself against the model: the last
layer read this way must reproduce the model's own logits (see :mod:`llmlab.lens.capture`), so a
family this table gets wrong is refused with one line rather than shown wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmlab.errors import LabError

if TYPE_CHECKING:
    import torch

#: Names of the final norm on a model's decoder (``model.model.norm`` in Llama, ``ln_f`` in
#: GPT-2/Bloom/Falcon, ``final_layer_norm`` in GPT-NeoX, ``final_layernorm`` in Phi, ``norm_f``
#: in Mamba), tried in this order.
NORM_NAMES = (
    "norm",
    "final_layernorm",
    "final_layer_norm",
    "ln_f",
    "norm_f",
    "final_norm",
    "embedding_norm",
    "layer_norm",
    "layernorm",
    "ln_final",
)

#: Families whose final norm sits where the search does not look (dotted path from the model
#: with the LM head). An empty path: the family has no final norm (the last layer feeds the
#: unembedding directly).
NORM_PATHS: dict[str, str] = {
    "openai-gpt": "",
    "ctrl": "transformer.layernorm",
    "xglm": "model.layer_norm",
}


def _softcap(logits: torch.Tensor, cap: float) -> torch.Tensor:
    import torch

    return torch.tanh(logits / cap) * cap


#: After the unembedding: (config field, what the family does with it). Applied when the text
#: config has the field set (not None, not 0).
LOGIT_TRANSFORMS: tuple[tuple[str, Callable[[Any, float], Any]], ...] = (
    ("logit_scale", lambda x, v: x * v),  # Cohere
    ("logits_scaling", lambda x, v: x / v),  # Granite
    ("lm_head_multiplier", lambda x, v: x * v),  # Falcon-H1
    ("final_logit_softcapping", _softcap),  # Gemma 2 and 3
    ("logits_soft_cap", _softcap),  # RecurrentGemma
    ("output_logit_soft_cap", _softcap),  # xLSTM
    # Inkling divides the last hidden state; its unembedding has no bias, so dividing the
    # logits is the same.
    ("logits_mup_width_multiplier", lambda x, v: x / v),
)

#: Families whose LM head is more than the module holding the output embedding: the modules
#: applied in order after the final norm (dotted paths from the model with the LM head).
HEAD_PATHS: dict[str, tuple[str, ...]] = {
    "modernbert-decoder": ("lm_head", "decoder"),  # prediction head, then the unembedding
    "electra": ("generator_predictions", "generator_lm_head"),
}


@dataclass
class LensReader:
    """Reads a residual stream (..., hidden) as the model reads its last one -> logits."""

    family: str
    norm: Any | None  # torch module, or None when the family has no final norm
    norm_path: str
    head: list[Any]  # torch modules applied in order: the unembedding, or a head around it
    head_path: str
    transforms: list[tuple[str, float, Callable[[Any, float], Any]]]

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.inference_mode():
            x = hidden.to(self._device(hidden))
            x = self.norm(x) if self.norm is not None else x
            for module in self.head:
                x = module(x)
                x = x[0] if isinstance(x, tuple) else x  # XLM's head returns (scores,)
            for _name, value, transform in self.transforms:
                x = transform(x, value)
            return x

    def _device(self, hidden: torch.Tensor) -> torch.device:
        """Where the reading runs: the norm's (or head's) device. A model split over devices
        (device_map) hands out each layer's stream on that layer's device; weights offloaded
        to disk sit on "meta" and their own hooks bring them in, so the stream stays put."""
        first = self.norm if self.norm is not None else self.head[0]
        param = next(iter(first.parameters()), None)
        if param is None or param.device.type == "meta":
            return hidden.device
        return param.device

    def describe(self) -> str:
        """In words, for the result: how a layer is read."""
        steps = [f"final norm ({self.norm_path})" if self.norm is not None else "no final norm"]
        steps.append(f"unembedding ({self.head_path})")
        steps += [f"{name}={value:g}" for name, value, _ in self.transforms]
        return " → ".join(steps)


def _get(root: Any, path: str) -> Any | None:
    for part in path.split("."):
        root = getattr(root, part, None)
        if root is None:
            return None
    return root


def _find_norm(model: Any, family: str) -> tuple[Any | None, str]:
    """The final norm module and its dotted path (None, "" when the family has none)."""
    import torch

    if family in NORM_PATHS:
        path = NORM_PATHS[family]
        return (_get(model, path), path) if path else (None, "")
    prefixes = [
        name
        for name, module in model.named_children()
        if module is not getattr(model, "lm_head", None) and isinstance(module, torch.nn.Module)
    ]
    for owner in ["", *prefixes]:
        for name in NORM_NAMES:
            path = f"{owner}.{name}" if owner else name
            module = _get(model, path)
            if isinstance(module, torch.nn.Module) and not isinstance(module, torch.nn.ModuleList):
                return module, path
    return None, ""


def lens_reader(model: Any) -> LensReader:
    """The reader of ``model``'s residual streams; one clear line when it has nothing to read
    them with."""
    config = model.config
    family = config.model_type
    unembed = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if unembed is None:
        raise LabError(
            f"the logit lens needs an output embedding (unembedding) to read the residual "
            f"stream, and {family} has none"
        )
    norm, path = _find_norm(model, family)
    head_paths = HEAD_PATHS.get(family) or (_owner_of(model, unembed),)
    head = [_get(model, p) for p in head_paths]
    try:
        text_config = config.get_text_config()
    except ValueError:  # several text configs (e.g. audio models): the top config holds them
        text_config = config
    transforms = []
    for name, transform in LOGIT_TRANSFORMS:
        value = getattr(text_config, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value:
            transforms.append((name, float(value), transform))
    return LensReader(family, norm, path, head, " → ".join(head_paths), transforms)


def _owner_of(model: Any, unembed: Any) -> str:
    """The model's child that holds the output embedding: the embedding itself (``lm_head``),
    or a head around it (BERT's ``cls``: dense, activation, norm, then the unembedding)."""
    for name, module in model.named_modules():
        if module is unembed:
            return name.split(".")[0]
    return "lm_head"
