"""A model behind an OpenAI-compatible server, standing in for a local :class:`LoadedModel`.

Generation, chat and the next-token view work through the server's API. What needs the
weights (attention, hidden states, expert routing, accelerations) meets :attr:`ServedModel.model`,
which raises one clear :class:`LabError` instead of failing deep inside a capture.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from llmlab.errors import LabError
from llmlab.models.capabilities import Capabilities
from llmlab.served.client import DEFAULT_TIMEOUT_S, Endpoint
from llmlab.served.validate import check_model_id, listing, printable

PREFIX = "openai:"
#: Top log-probabilities per token an OpenAI-compatible server gives at most (llama.cpp and
#: vLLM allow 20).
MAX_TOP_LOGPROBS = 20
#: What a served model can do: generate remotely, with a few top log-probabilities per token;
#: its internals stay on the server.
SERVED = Capabilities(remote=True, internals=False, top_logprobs=MAX_TOP_LOGPROBS)


class PieceVocab:
    """The server streams text pieces, not its token ids. Each distinct piece gets a small id
    in this table so results keep a ``token_ids`` list and ``decode`` works as for a local
    tokenizer; ``pieces[i]`` is the text of id ``i``. The ids are this session's, not the
    server's."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self._ids: dict[str, int] = {}

    def id_of(self, piece: str) -> int:
        if piece not in self._ids:
            self._ids[piece] = len(self.pieces)
            self.pieces.append(piece)
        return self._ids[piece]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(self.pieces[i] for i in ids)

    chat_template = "applied by the server"
    pad_token_id = None


@dataclass
class ServedModel:
    """``%llm load openai:URL --model NAME``. Commands ask :attr:`capabilities` what it can
    do (``served`` stays for code written before that protocol)."""

    name: str
    spec: str
    endpoint: Endpoint
    model_id: str  # the name the server knows it by
    server_models: list[str]
    load_seconds: float
    notes: list[str] = field(default_factory=list)
    tokenizer: PieceVocab = field(default_factory=PieceVocab)
    server: Any = None  # the EngineServer when llmlab started it (%llm serve): unload stops it

    served = True
    device = "served"
    dtype = "server-side"
    family = "served"
    has_chat_template = True
    context_length = None

    @property
    def capabilities(self) -> Capabilities:
        return SERVED

    @property
    def source(self) -> str:
        return f"{self.model_id} served at {self.endpoint.base_url}"

    @property
    def model(self) -> Any:
        raise LabError(
            f"{self.name} is a served model ({self.endpoint.base_url}): its weights stay on the "
            "server, so attention, hidden states, experts and accelerations cannot be reached "
            "from here; load a local model for this"
        )

    @property
    def config(self) -> Any:
        return self.model

    def exclusive(self, what: str, *, on_wait: Any = None) -> contextlib.AbstractContextManager:
        """No local lock: the server schedules its own requests (a local model's guard,
        :func:`llmlab.models.guard.exclusive`, keeps hooks and timings apart)."""
        return contextlib.nullcontext(self)

    def summary(self) -> dict[str, Any]:
        """One row of ``%llm models`` (the same columns as a local model)."""
        return {
            "name": self.name,
            "family": "served",
            "params": "?",
            "layers": None,
            "heads": None,
            "device": f"served ({self.endpoint.host})",
            "dtype": "server-side",
            "attention": "server-side",
            "weights": "on the server",
            "context": None,
            "source": self.source,
        }


def is_served(lm: Any) -> bool:
    """Does ``lm`` run behind a server? (its :class:`Capabilities` say so)."""
    return lm.capabilities.remote


def load_served(
    spec: str,
    *,
    name: str | None = None,
    model: str | None = None,
    api_key_env: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    deadline_s: float | None = None,
) -> ServedModel:
    """Connect to ``openai:http://host:port/v1`` and check that it serves ``model``.

    Without ``model`` the server's only model is taken; with several it must be named.
    ``timeout_s``: longest wait for the server's next event; ``deadline_s``: one request in all
    (default 600 s, or ``timeout_s`` where that is longer).
    """
    start = time.perf_counter()
    endpoint = Endpoint(
        spec.removeprefix(PREFIX),
        api_key_env=api_key_env,
        timeout_s=timeout_s,
        deadline_s=deadline_s,
    )
    available = endpoint.models()
    if model is None:
        if len(available) != 1:
            raise LabError(
                f"the server at {endpoint.host} serves {listing(available) or 'no model'}; "
                "name one with --model"
            )
        model = available[0]
    elif available and model not in available:
        raise LabError(
            f"the server at {endpoint.host} has no model {printable(repr(model), 80)}; it "
            f"serves: {listing(available)}"
        )
    check_model_id(model, endpoint.host)
    return ServedModel(
        name=name or _default_name(model),
        spec=PREFIX + endpoint.base_url,  # without a password the URL may have held
        endpoint=endpoint,
        model_id=model,
        server_models=available,
        load_seconds=time.perf_counter() - start,
    )


def _default_name(model_id: str) -> str:
    """A name to type after ``%llm use``: the id's last part, no spaces."""
    name = "-".join(model_id.rsplit("/", 1)[-1].split())[:64]
    return name or "served"
