"""A session: the loaded models, which one is active, and each model's chat history."""

from __future__ import annotations

import contextlib
import os
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import llmlab.interventions  # noqa: F401  (registers ablate=, experts=, steer= as spec keys)
from llmlab.errors import LabError
from llmlab.generation.engine import Messages, TokenCallback, generate
from llmlab.generation.next_token import NextTokenDistribution, next_token_distribution
from llmlab.generation.result import GenerationResult
from llmlab.generation.settings import GenerationSettings
from llmlab.models.loaded import LoadedModel
from llmlab.models.lookup import use_default_models


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
        self.last_exchange: dict[str, Messages] = {}  # per model: its last generate() turn
        # Per model: the KV of its last prompt + answer, reused by accel "prefix=on" (chat turns,
        # a fixed system prompt). Imported lazily: llmlab.accel needs no torch at import either.
        self.prefix_caches: dict[str, Any] = {}

    # -- models ---------------------------------------------------------------------------
    def load(
        self,
        spec: str = "default",
        *,
        name: str | None = None,
        replace: bool = False,
        announce: Callable[[LoadedModel], None] | None = None,
        threads: int | None = None,
        **options: Any,
    ) -> LoadedModel:
        """Load a model (see :func:`llmlab.models.registry.load_model`) and make it active.

        A name in use by another model is refused unless ``replace=True`` (the same model
        loaded again just replaces its copy). ``announce(lm)`` runs before the model joins
        the session: if it raises (a "loaded" line that cannot be printed), the load is undone.
        ``threads``: torch CPU threads for the whole session (torch's setting is process-wide);
        on a busy machine 1 is often several times faster, and the model's ``notes`` say when
        the machine looks too busy for the threads torch uses.
        """
        if isinstance(spec, os.PathLike):
            spec = os.fspath(spec)
        if not isinstance(spec, str):
            raise LabError(
                f"load takes a model spec as text ('default', 'tiny:llama', a folder or a Hub "
                f"id), got {spec!r} ({type(spec).__name__})"
            )
        if name is not None:
            check_name(name)
        from llmlab.models.registry import default_name, load_model
        from llmlab.served.model import PREFIX, load_served

        served = spec.startswith(PREFIX)
        if not served:  # refused before a long load, where the name is known in advance
            self.check_free(name or default_name(spec), spec, replace)
        if served:  # an OpenAI-compatible server (llmlab.served)
            if threads is not None:
                raise LabError("--threads is for local models; a server sets its own threads")
            lm = load_served(spec, name=name, **options)
        else:
            lm = load_model(spec, name=name, threads=threads, **options)
        return self.add(lm, replace=replace, announce=announce)

    def add(
        self,
        lm: LoadedModel,
        *,
        replace: bool = False,
        announce: Callable[[LoadedModel], None] | None = None,
    ) -> LoadedModel:
        """Put a model built elsewhere (a trained one, say) in the session under ``lm.name``
        and make it active; the same rules as :meth:`load` for a name in use."""
        try:
            check_name(lm.name, derived=True)
            self.check_free(lm.name, _identity(lm), replace)
            if announce is not None:
                announce(lm)
        except BaseException:
            _free(lm)  # never joined the session
            raise
        old = self.models.get(lm.name)
        if old is not None and old is not lm and _identity(old) != _identity(lm):
            # Another model under a name in use: the old model's conversation is not this one's.
            self.histories.pop(lm.name, None)
            self.last_exchange.pop(lm.name, None)
        self.models[lm.name] = lm
        if old is not None and old is not lm:
            self._release(old)  # a server %llm serve started dies with the name it was under
        self.histories.setdefault(lm.name, [])
        self.prefix_caches.pop(lm.name, None)  # a reloaded name must not reuse the old KV
        self.active = lm.name
        return lm

    def check_free(self, name: str, identity: Any, replace: bool) -> None:
        old = self.models.get(name)
        if isinstance(identity, str):
            identity = _canonical_spec(identity)
        if old is None or replace or _identity(old) == identity:
            return
        raise LabError(
            f"a model named {name!r} is already loaded ({old.spec}); pick another --name, "
            f"unload it first, or add --replace to replace it"
        )

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
        """Free a model (default: the active one). A background sweep on it is stopped first
        (its finished rows are kept) and a running capture or chat turn is waited for; then
        its weights are freed, also where a result object still refers to the model."""
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise LabError(f"unload takes a loaded model's name, got {name!r}; loaded: "
                           f"{self._names()}")  # fmt: skip
        name = self.active if name is None else name
        if name is None or name not in self.models:
            raise LabError(f"no model named {name!r} is loaded; loaded: {self._names()}")
        lm = self.models[name]
        from llmlab.models.guard import retire

        retire(lm)  # Ctrl-C here leaves the model loaded
        self.models.pop(name, None)
        self.histories.pop(name, None)
        self.last_exchange.pop(name, None)
        self.prefix_caches.pop(name, None)
        if self.active == name:
            self.active = next(iter(self.models), None)
        self._release(lm, retired=True)
        return name

    def _release(self, lm: LoadedModel, *, retired: bool = False) -> None:
        """Free a model that left the session, unless another name still uses its weights."""
        if any(_same_weights(other, lm) for other in self.models.values()):
            return
        if not retired:
            from llmlab.models.guard import retire

            retire(lm)
        _free(lm)

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
        accel: Any = None,
        system: str | None = None,
        **setting_fields: Any,
    ) -> GenerationResult:
        """Generate from one prompt. Settings come as a record or as keyword fields.

        ``accel``: an acceleration config ("spec=prompt-lookup,quant=int8", see llmlab.accel).
        ``system``: a system prompt put before the prompt through the chat template.
        """
        settings = GenerationSettings.of(settings, **setting_fields)
        lm = self.model(model)
        text: str | Messages = prompt
        if system is not None:
            if not prompt.strip():
                raise LabError("the prompt is empty")
            text = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        result = self._generate(lm, text, settings, raw=raw, on_token=on_token, accel=accel)
        if not raw and result.stats.stopped != "interrupted" and lm.has_chat_template:
            # Remembered so that a new chat can ask about this answer ("summarize it").
            user = text if isinstance(text, list) else [{"role": "user", "content": prompt}]
            self.last_exchange[lm.name] = [*user, {"role": "assistant", "content": result.text}]
        return result

    def _generate(self, lm, prompt, settings, *, raw=False, on_token=None, accel=None):
        if lm.capabilities.remote:
            from llmlab.served.generate import served_generate

            if accel:
                raise LabError(f"{lm.name} is a served model: accelerations run on the server")
            return served_generate(lm, prompt, settings, raw=raw, on_token=on_token)
        if accel is None or accel == "":
            return generate(lm, prompt, settings, raw=raw, on_token=on_token)
        from llmlab.accel import PrefixCache
        from llmlab.targets import VARIANT, resolve

        target = resolve(accel, lm, models=self.models, kinds=(VARIANT,))
        prefix = self.prefix_caches.setdefault(lm.name, PrefixCache())
        return target.generate(prompt, settings, on_token=on_token, raw=raw, prefix_cache=prefix)

    def chat(
        self,
        message: str,
        settings: GenerationSettings | None = None,
        *,
        model: str | None = None,
        on_token: TokenCallback | None = None,
        accel: Any = None,
        **setting_fields: Any,
    ) -> GenerationResult:
        """One turn of a multi-turn chat; the history is kept per model. A new chat starts from
        the model's last :meth:`generate` exchange, so it can refer to that answer.
        With ``accel="prefix"`` the KV of the earlier turns is reused (only the new turn
        prefills)."""
        lm = self.model(model)
        if not message.strip():
            raise LabError("the chat message is empty")
        settings = GenerationSettings.of(settings, **setting_fields)
        from llmlab.models.guard import exclusive

        # One turn at a time per model: a turn reads the history, generates and writes it
        # back; two at once (two threads) would both start from the same history and the
        # second write would drop the first turn.
        with exclusive(lm, "chat turn"):
            history = self.histories.setdefault(lm.name, [])
            if not history:
                history.extend(self.last_exchange.pop(lm.name, []))
            turn = [*history, {"role": "user", "content": message}]
            result = self._generate(lm, turn, settings, on_token=on_token, accel=accel)
            if result.stats.stopped != "interrupted":
                history[:] = [*turn, {"role": "assistant", "content": result.text}]
        return result

    def reset_chat(self, model: str | None = None) -> None:
        name = self.model(model).name
        self.histories[name] = []
        self.last_exchange.pop(name, None)
        self.prefix_caches.pop(name, None)

    def next_token(
        self, prompt: str, *, model: str | None = None, **options: Any
    ) -> NextTokenDistribution:
        """The next-token distribution after ``prompt`` (see :func:`next_token_distribution`)."""
        lm = self.model(model)
        if lm.capabilities.remote:
            from llmlab.served.generate import served_next_token

            return served_next_token(lm, prompt, **options)
        return next_token_distribution(lm, prompt, **options)

    def lens(
        self,
        text: str,
        *,
        model: str | None = None,
        compare: str | None = None,
        generate: int = 0,
        chat: bool | None = None,
    ) -> Any:
        """Logit lens over ``text``: every layer read through the final norm and unembedding
        (:class:`llmlab.lens.LensResult`); with ``compare`` (another loaded model or an
        acceleration config such as "int8"), where that variant parts layer by layer
        (:class:`llmlab.lens.LensComparison`)."""
        from llmlab import lens

        lm = self.model(model)
        if compare:
            return lens.compare(lm, compare, text, lab=self, generate=generate, chat=chat)
        return lens.lens(lm, text, generate=generate, chat=chat)

    # -- the other views the magics show (each result displays as its live view: Jupyter,
    # marimo; and exports as its offline copy) ------------------------------------------
    def attention(
        self, text: str, *, model: str | None = None, compare: str | None = None, **options: Any
    ) -> Any:
        """Every layer's and head's attention over ``text`` (``%llm attention``):
        :class:`llmlab.attention.AttentionResult`, or with ``compare`` (another loaded model or
        a configuration such as "int8") an :class:`~llmlab.attention.AttentionComparison`.
        ``options``: layer, head, layers, precision, generate, chat."""
        from llmlab import attention

        lm = self.model(model)
        if compare:
            return attention.compare(lm, compare, text, lab=self, **options)
        return attention.attention(lm, text, **options)

    def moe(
        self,
        texts: str | dict[str, str],
        *,
        model: str | None = None,
        generate: int = 0,
        layer: int | None = None,
    ) -> Any:
        """Which experts each token goes to (``%llm moe``): one text, or ``{name: text}`` to
        compare inputs; :class:`llmlab.moe.MoeRouting`."""
        from llmlab.moe import capture_routing

        texts = {"text": texts} if isinstance(texts, str) else dict(texts)
        return capture_routing(self.model(model), texts, generate=generate, layer=layer)

    def moe_train(
        self, *, steps: int | None = None, name: str = "moe-train", replace: bool = False
    ) -> Any:
        """Train the demo MoE (``%llm moe-train``), waiting until done; the trained model joins
        this session as ``name``. Returns the run (its view: loss, routing per step)."""
        from dataclasses import replace

        from llmlab.moe.demo import DemoRecipe
        from llmlab.moe.training import train_moe_demo

        recipe = DemoRecipe()
        if steps is not None:
            if steps < 1:
                raise LabError("moe_train: steps takes a number of steps >= 1")
            recipe = replace(recipe, steps=steps, warmup=min(recipe.warmup, steps))
        run = train_moe_demo(recipe, progress=False)
        if run.trained is not None and run.trained.steps_done:
            self.add(run.loaded(name), replace=replace)
        return run

    def tradeoff(
        self,
        configs: str | list[str],
        prompts: list[str] | None = None,
        *,
        model: str | None = None,
        **options: Any,
    ) -> Any:
        """Sweep acceleration configurations (``%llm tradeoff``), waiting until done:
        :class:`llmlab.tradeoff.Sweep`. ``options``: max_new_tokens, repeats, warmup, text,
        prices, axes."""
        from llmlab.tradeoff import run_sweep

        return run_sweep(self.model(model), configs, prompts, models=self.models, **options)

    def accel(
        self,
        config: str = "baseline",
        *,
        prompt: str | None = None,
        max_new_tokens: int = 64,
        model: str | None = None,
    ) -> Any:
        """The acceleration panel (``%llm accel``): toggles and a Run button in its view;
        ``panel.run(config, prompt, max_new_tokens)`` runs one from Python."""
        from llmlab.accel import PrefixCache, parse_config
        from llmlab.accel.panel import DEFAULT_PROMPT, AccelPanelState

        lm = self.model(model)
        if not lm.capabilities.internals:
            _ = lm.model  # the one-line "served model: its weights stay on the server"
        return AccelPanelState(
            lm=lm,
            models=self.models,
            prompt=prompt or DEFAULT_PROMPT,
            max_new_tokens=max_new_tokens,
            config=parse_config(config, device=lm.device).label,
            prefix_cache=self.prefix_caches.setdefault(lm.name, PrefixCache()),
        )

    def load_test(
        self, concurrency: Any = (1, 2, 4, 8), *, target: str | None = None, **options: Any
    ) -> Any:
        """Load-test a served model (``%llm load-test``): :class:`llmlab.served.LoadTest`.
        ``options``: requests, prompts, max_tokens, slo, warmup."""
        from llmlab.served.loadtest import run_load_test

        if target and target.startswith("served:"):  # a target spec (llmlab.targets)
            from llmlab.targets import SERVED, resolve

            return run_load_test(
                resolve(target, models=self.models, kinds=(SERVED,)).other, concurrency, **options
            )
        return run_load_test(self.model(target), concurrency, **options)

    # -- interventions (llmlab.interventions) ------------------------------------------------
    def head_importance(
        self,
        text: str,
        *,
        answer: str | None = None,
        model: str | None = None,
        patterns: bool = True,
        **options: Any,
    ) -> Any:
        """Ablate every head in turn (:func:`llmlab.interventions.head_importance`); with
        ``patterns`` the same tokens' attention is captured too, so the view shows a clicked
        head's pattern."""
        from llmlab import interventions

        lm = self.model(model)
        result = interventions.head_importance(lm, text, answer=answer, **options)
        if patterns:
            from llmlab.attention import attention

            result.attention = attention(lm, text, chat=False)
        return result

    def patching(
        self,
        clean: str,
        corrupted: str,
        answer: str,
        wrong: str,
        *,
        model: str | None = None,
        **options: Any,
    ) -> Any:
        """Activation patching of ``clean`` into ``corrupted`` (see
        :func:`llmlab.interventions.patching`)."""
        from llmlab import interventions

        return interventions.patching(self.model(model), clean, corrupted, answer, wrong, **options)

    def steering_vector(
        self,
        positive: str,
        negative: str,
        *,
        layer: int,
        name: str | None = None,
        model: str | None = None,
    ) -> Any:
        """A steering vector from two prompts, usable as ``steer=NAME*SCALE``."""
        from llmlab import interventions

        lm = self.model(model)
        return interventions.steering_vector(lm, positive, negative, layer=layer, name=name)

    def intervene(self, spec: Any, *, model: str | None = None) -> Any:
        """A context manager: every run of the model inside sees the interventions of
        ``spec`` (``"ablate=13.8"``, ``"experts=-3"``, ``"steer=NAME*4"``)."""
        from llmlab import interventions

        return interventions.intervened(self.model(model), spec)

    def generate_intervened(
        self,
        prompt: str,
        spec: Any,
        settings: GenerationSettings | None = None,
        *,
        model: str | None = None,
        raw: bool = False,
        **fields: Any,
    ) -> Any:
        """The answer to ``prompt`` plainly and with the interventions of ``spec``, side by
        side (:class:`llmlab.interventions.InterventionGeneration`)."""
        from llmlab import interventions

        lm = self.model(model)
        return interventions.generate_with(lm, prompt, spec, settings, raw=raw, **fields)


def check_name(name: Any, *, derived: bool = False) -> None:
    """A model name must be text a user can type and a terminal can print: not empty, no
    control characters (newlines, escapes), no lone surrogates."""
    bad = None
    if not isinstance(name, str) or not name.strip():
        bad = "must be non-empty text"
    elif any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
        bad = "must not hold control characters or lone surrogates"
    elif len(name) > 200:
        bad = "must be at most 200 characters"
    if bad is not None:
        shown = repr(name) if not isinstance(name, str) else ascii(name[:60])
        hint = "; give one with --name" if derived else ""
        raise LabError(f"a model name {bad}, got {shown}{hint}")


def _canonical_spec(spec: str) -> str:
    """One text per model a spec names: the default's aliases as one, a folder by its path."""
    from llmlab.models.registry import DEFAULT_SPECS

    if spec in DEFAULT_SPECS:
        return "default"
    path = Path(spec).expanduser()
    if not spec.startswith(("tiny:", "openai:")) and path.exists():
        return str(path.resolve())
    return spec


def _is_remote(lm: Any) -> bool:
    capabilities = getattr(lm, "capabilities", None)
    return bool(getattr(capabilities, "remote", False))


def _identity(lm: Any) -> Any:
    """What makes two loaded models "the same model" (a reload) rather than two models."""
    if _is_remote(lm):
        return (lm.spec, getattr(lm, "model_id", None))
    return _canonical_spec(lm.spec)


def _same_weights(a: Any, b: Any) -> bool:
    if _is_remote(a) or _is_remote(b):
        return a is b
    return a.model is b.model


def _free(lm: Any) -> None:
    """Release a model's memory now, also where results still refer to it: its weights move
    to the meta device (no storage); a served model's connections close, and a server that
    ``%llm serve`` started for it stops."""
    import gc

    if _is_remote(lm):
        lm.endpoint.close()
        if getattr(lm, "server", None) is not None:
            lm.server.stop()
        return
    module = getattr(lm, "model", None)
    to = getattr(module, "to", None)
    if to is not None:
        # Some wrappers (disk offload, quantized weights) refuse to move: they are only dropped.
        with contextlib.suppress(Exception):
            to("meta")
    gc.collect()
    if str(getattr(lm, "device", "")).startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


_default_lab: Lab | None = None


def default_lab() -> Lab:
    """The session the ``%llm`` magics use, so Python code in the notebook can share it."""
    global _default_lab
    if _default_lab is None:
        _default_lab = Lab()
    return _default_lab


# A name in a target (spec=draft:NAME, served:NAME) given without the models to look it up in
# means one of the %llm session's models.
use_default_models(lambda: default_lab().models)
