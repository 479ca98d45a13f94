"""A session: the loaded models, which one is active, and each model's chat history."""

from __future__ import annotations

from typing import Any

from llmlab.errors import LabError
from llmlab.generation.engine import Messages, TokenCallback, generate
from llmlab.generation.next_token import NextTokenDistribution, next_token_distribution
from llmlab.generation.result import GenerationResult
from llmlab.generation.settings import GenerationSettings
from llmlab.models.loaded import LoadedModel


class Lab:
    """Everything ``%llm`` does, callable from plain Python::

    from llmlab import Lab
    lab = Lab()
    lab.load()                                   # the embedded SmolLM2-135M-Instruct
    print(lab.generate("What is the capital of France?").text)
    """

    def __init__(self) -> None:
        self.models: dict[str, LoadedModel] = {}
        self.active: str | None = None
        self.histories: dict[str, Messages] = {}

    # -- models ---------------------------------------------------------------------------
    def load(
        self, spec: str = "default", *, name: str | None = None, **options: Any
    ) -> LoadedModel:
        """Load a model (see :func:`llmlab.models.registry.load_model`) and make it active."""
        from llmlab.models.registry import load_model

        lm = load_model(spec, name=name, **options)
        self.models[lm.name] = lm
        self.histories.setdefault(lm.name, [])
        self.active = lm.name
        return lm

    def model(self, name: str | None = None) -> LoadedModel:
        """The named model, else the active one; loads the default if nothing is loaded."""
        if name is not None:
            if name not in self.models:
                raise LabError(f"no model named {name!r} is loaded; loaded: {self._names()}")
            return self.models[name]
        if self.active is None:
            return self.load()
        return self.models[self.active]

    def use(self, name: str) -> LoadedModel:
        lm = self.model(name)
        self.active = name
        return lm

    def unload(self, name: str | None = None) -> str:
        name = name or self.active
        if name is None or name not in self.models:
            raise LabError(f"no model named {name!r} is loaded; loaded: {self._names()}")
        del self.models[name]
        self.histories.pop(name, None)
        if self.active == name:
            self.active = next(iter(self.models), None)
        import gc

        gc.collect()
        return name

    def _names(self) -> str:
        return ", ".join(self.models) or "none"

    # -- generation -----------------------------------------------------------------------
    def generate(
        self,
        prompt: str,
        settings: GenerationSettings | None = None,
        *,
        model: str | None = None,
        raw: bool = False,
        on_token: TokenCallback | None = None,
        **setting_fields: Any,
    ) -> GenerationResult:
        """Generate from one prompt. Settings come as a record or as keyword fields."""
        settings = settings or GenerationSettings(**setting_fields)
        return generate(self.model(model), prompt, settings, raw=raw, on_token=on_token)

    def chat(
        self,
        message: str,
        settings: GenerationSettings | None = None,
        *,
        model: str | None = None,
        on_token: TokenCallback | None = None,
        **setting_fields: Any,
    ) -> GenerationResult:
        """One turn of a multi-turn chat; the history is kept per model."""
        lm = self.model(model)
        if not message.strip():
            raise LabError("the chat message is empty")
        settings = settings or GenerationSettings(**setting_fields)
        history = self.histories.setdefault(lm.name, [])
        turn = [*history, {"role": "user", "content": message}]
        result = generate(lm, turn, settings, on_token=on_token)
        if result.stats.stopped != "interrupted":
            history[:] = [*turn, {"role": "assistant", "content": result.text}]
        return result

    def reset_chat(self, model: str | None = None) -> None:
        self.histories[self.model(model).name] = []

    def next_token(
        self, prompt: str, *, model: str | None = None, **options: Any
    ) -> NextTokenDistribution:
        """The next-token distribution after ``prompt`` (see :func:`next_token_distribution`)."""
        return next_token_distribution(self.model(model), prompt, **options)


_default_lab: Lab | None = None


def default_lab() -> Lab:
    """The session the ``%llm`` magics use, so Python code in the notebook can share it."""
    global _default_lab
    if _default_lab is None:
        _default_lab = Lab()
    return _default_lab
