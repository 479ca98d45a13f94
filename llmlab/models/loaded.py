"""A loaded model with its tokenizer and the facts a user wants to see about it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmlab.devices import dtype_name, format_bytes, placement_text
from llmlab.models.capabilities import LOCAL, Capabilities
from llmlab.models.facts import ModelFacts, config_facts
from llmlab.models.facts import weight_bytes as count_weight_bytes


@dataclass
class LoadedModel:
    """A model ready to run. ``spec`` is what the user asked for (``default``, ``tiny:llama``,
    a Hub id or a folder); ``name`` is how the session refers to it."""

    name: str
    spec: str
    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers.PreTrainedTokenizerBase
    device: str
    source: str  # where the weights came from, in words
    load_seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def family(self) -> str:
        return self.config.model_type

    @property
    def dtype(self) -> str:
        return dtype_name(self.model.dtype)

    @property
    def attn_implementation(self) -> str:
        return self.config._attn_implementation

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def weight_bytes(self) -> int:
        """See :func:`llmlab.models.facts.weight_bytes` (the one weight counter)."""
        return count_weight_bytes(self.model)

    @property
    def facts(self) -> ModelFacts:
        """Layers, heads, KV heads, experts and weight bytes (:mod:`llmlab.models.facts`)."""
        return config_facts(self.config, self.weight_bytes)

    @property
    def capabilities(self) -> Capabilities:
        """Everything runs here: internals can be read, every log-probability is at hand."""
        return LOCAL

    @property
    def placement(self) -> str:
        """Where the weights live when spread over devices (``cpu 40% · disk 60%``), else
        the one device."""
        return placement_text(self.model) or self.device

    @property
    def is_split(self) -> bool:
        """Spread over several devices or offloaded (accelerate hooks move weights per call)."""
        return self.placement != self.device

    @property
    def context_length(self) -> int:
        text_config = self.config.get_text_config()
        # XLNet has no length limit and says -1: treat any value ≤ 0 as "not given".
        length = getattr(text_config, "max_position_embeddings", 0) or 0
        return int(length) if length > 0 else 2048

    @property
    def is_encoder_decoder(self) -> bool:
        """T5, BART, ...: an encoder reads the input, a decoder generates."""
        return bool(getattr(self.config, "is_encoder_decoder", False))

    @property
    def is_encoder_only(self) -> bool:
        """BERT, RoBERTa, ...: bidirectional encoder, no decoder to generate with."""
        if self.is_encoder_decoder:
            return False
        can_generate = getattr(self.model, "can_generate", None)
        return not (can_generate() if callable(can_generate) else True)

    def check_can_generate(self) -> None:
        """One clear line for models that cannot generate text."""
        if self.is_encoder_only:
            from llmlab.errors import LabError

            raise LabError(f"{self.name} ({self.family}) is encoder-only: it cannot generate text")

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def exclusive(
        self, what: str, *, on_wait: Callable[[str], None] | None = None
    ) -> contextlib.AbstractContextManager[LoadedModel]:
        """This model to yourself for the block: see :func:`llmlab.models.guard.exclusive`,
        which every operation that runs, times, hooks or switches a model takes."""
        from llmlab.models.guard import exclusive

        return exclusive(self, what, on_wait=on_wait)

    def summary(self) -> dict[str, Any]:
        """One row of ``%llm models``."""
        facts = self.facts
        return {
            "name": self.name,
            "family": self.family,
            "params": f"{self.n_params / 1e6:.1f} M",
            "layers": facts.layers,
            "heads": facts.heads,
            "device": self.placement,
            "dtype": self.dtype,
            "attention": self.attn_implementation,
            "weights": format_bytes(facts.weight_bytes),
            "context": self.context_length,
            "source": self.source,
        }
