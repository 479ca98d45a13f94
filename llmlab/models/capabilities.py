"""What a model can do for a command, asked instead of probing what kind of object it is.

A local :class:`~llmlab.models.loaded.LoadedModel` and a served model
(:class:`llmlab.served.model.ServedModel`) stand in for each other where they can (generation,
chat, the next-token view, sweeps). Each says what it can do through ``model.capabilities``;
commands ask that (``if not lm.capabilities.internals: refuse``), never the object's type.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Capabilities:
    """``remote``: it runs behind a server (requests go over the network, the server schedules
    them). ``internals``: its weights, hidden states, attention and routing can be read and
    changed here (captures, accelerations, interventions, drafting). ``top_logprobs``: how many
    top log-probabilities per token it can give; ``None`` means the whole vocabulary."""

    remote: bool
    internals: bool
    top_logprobs: int | None

    def top_k(self, wanted: int) -> int:
        """``wanted`` top log-probabilities, or as many as the model can give."""
        return wanted if self.top_logprobs is None else min(wanted, self.top_logprobs)


#: A model whose weights are loaded here.
LOCAL = Capabilities(remote=False, internals=True, top_logprobs=None)
