"""A target: one "other thing to run these tokens through", typed, and the one resolver that
turns a spec into it (the language is described in :mod:`llmlab.targets`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmlab.errors import LabError
from llmlab.models.lookup import loaded_models, same_tokenizer
from llmlab.targets.kinds import SPEC_KINDS, Modifier, owner, parse_parts, spec_keys

if TYPE_CHECKING:
    from llmlab.accel.prefix import PrefixCache
    from llmlab.accel.registry import AccelConfig
    from llmlab.generation.engine import Messages, TokenCallback
    from llmlab.generation.result import GenerationResult
    from llmlab.generation.settings import GenerationSettings
    from llmlab.models.capabilities import Capabilities
    from llmlab.models.loaded import LoadedModel

SERVED_PREFIX = "served:"
ENGINE_PREFIX = "engine:"
#: The kinds of target: the base model changed by spec parts (no parts: the baseline),
#: another loaded model, a served model, a serving engine started for it
#: (``engine:vllm+prefix-caching=on``, :mod:`llmlab.served.engines`).
VARIANT, MODEL, SERVED, ENGINE = "variant", "model", "served", "engine"
ALL_KINDS = (VARIANT, MODEL, SERVED, ENGINE)
#: Kinds that run behind a server (their opened model is a served one).
REMOTE_KINDS = (SERVED, ENGINE)


@dataclass(frozen=True, eq=False)
class Target:
    """One thing to run tokens through, relative to a base model.

    ``kind``: :data:`VARIANT` (``base`` changed by ``parts``, accelerations first; no change at
    all is the baseline), :data:`MODEL` (``other``, another loaded model), :data:`SERVED`
    (``other``, a served model) or :data:`ENGINE` (``other``, an engine configuration whose
    server :meth:`open` starts and stops). ``models``: where names inside the parts (``draft:NAME``)
    are looked up (None: the ``%llm`` session's, see :mod:`llmlab.models.lookup`).
    """

    kind: str
    spec: str
    base: Any = None
    other: Any = None
    parts: tuple[Modifier, ...] = ()
    models: Mapping[str, Any] | None = None

    # -- what it is ---------------------------------------------------------------------------
    @property
    def accel(self) -> AccelConfig:
        """The acceleration parts (empty for another model or a served one)."""
        from llmlab.accel.registry import AccelConfig

        return next((m.config for m in self.parts if m.kind == "accel"), AccelConfig())

    @property
    def changes(self) -> tuple[Modifier, ...]:
        """The parts that change something (an empty acceleration config changes nothing)."""
        return tuple(m for m in self.parts if not (m.kind == "accel" and m.config.is_baseline))

    @property
    def is_baseline(self) -> bool:
        return self.kind == VARIANT and not self.changes

    @property
    def label(self) -> str:
        """``baseline``, ``quant=int8,spec=prompt-lookup``, ``NAME`` or ``served:NAME``."""
        if self.kind == SERVED:
            return f"{SERVED_PREFIX}{self.other.name}"
        if self.kind == ENGINE:
            return self.other.label
        if self.kind == MODEL:
            return self.other.name
        return ",".join(m.label for m in self.changes) or "baseline"

    def view_label(self, base: Any = None) -> str:
        """How a view titles it: ``smollm2 (quant=int8)``, ``other (float32)``."""
        if self.kind in REMOTE_KINDS:
            return self.label
        if self.kind == MODEL:
            return f"{self.other.name} ({self.other.dtype})"
        base = base if base is not None else self.base
        return f"{base.name} ({self.label})"

    @property
    def claim(self) -> bool | None:
        """Output-preserving by design? ``None``: no claim (another model, a server)."""
        if self.kind != VARIANT:
            return None
        claims = [m.output_preserving for m in self.changes]
        if False in claims:
            return False
        return None if None in claims else True

    @property
    def capabilities(self) -> Capabilities:
        """What the model it runs can do (served: no internals, a few top log-probs)."""
        if self.kind == ENGINE:
            from llmlab.served.model import SERVED as SERVED_CAPABILITIES

            return SERVED_CAPABILITIES
        return (self.other if self.kind != VARIANT else self.base).capabilities

    @property
    def keeps_kv_cache(self) -> bool:
        """False where no local KV cache is kept (kv=off, a served model)."""
        if self.kind in REMOTE_KINDS:
            return False
        return self.kind == MODEL or self.accel.get("kv") != "off"

    def tokenizer_compatible(self, reference: Any = None, text: str | None = None) -> bool:
        """Does it read the same token ids as ``reference`` (default: the base model)?"""
        if self.kind in REMOTE_KINDS:
            return False  # a server streams text pieces, not ids of a tokenizer we hold
        reference = reference if reference is not None else self.base
        mine = self.other if self.kind != VARIANT else self.base
        if mine is None or reference is None:
            return True
        return same_tokenizer(reference.tokenizer, mine.tokenizer, text)

    def check(self, base: Any = None) -> None:
        """Refuse, in one line, what cannot run here (a part ``base`` on this machine cannot
        run, such as quant=bnb8 without CUDA)."""
        base = base if base is not None else self.base
        if self.kind == VARIANT and base is not None:
            for part in self.parts:
                part.check(base)

    def require_same_tokens(self, reference: Any, text: str, why: str) -> None:
        """Refuse in one line when it reads other token ids than ``reference`` (``why``: what
        a comparison over different tokens would get wrong)."""
        if not self.tokenizer_compatible(reference, text):
            raise LabError(
                f"cannot compare {reference.name} with {self.other.name}: they use different "
                f"tokenizers, so {why}"
            )

    def weight_bytes(self, base: Any = None) -> int | None:
        """Bytes of the weights it runs (the one counter, :mod:`llmlab.models.facts`); a
        changed copy is built (and cached) to be counted; None for a served model."""
        if self.kind in REMOTE_KINDS:
            return None
        if self.kind == MODEL:
            return self.other.weight_bytes
        base = base if base is not None else self.base
        if not self.accel.load_parts and all(m.kind == "accel" for m in self.changes):
            return base.weight_bytes
        with self.open(base) as lm:
            return lm.weight_bytes

    # -- using it -----------------------------------------------------------------------------
    @contextmanager
    def open(self, base: Any = None) -> Iterator[Any]:
        """The model to run (``base``: default the target's own). A variant's parts apply in
        order on a copy or through hooks; the base model is exactly as it was afterwards.
        An engine target's server is started for the block and stopped after it."""
        if self.kind == ENGINE:
            from llmlab.served.engines import engine_point

            with engine_point(self.other) as sm:
                yield sm
            return
        if self.kind != VARIANT:
            yield self.other
            return
        lm = base if base is not None else self.base
        if lm is None:
            raise LabError(f"{self.spec!r} changes a model: give the model it applies to")
        with ExitStack() as stack:
            for part in self.parts:
                lm = stack.enter_context(part.open(lm))
            yield lm

    def generate(
        self,
        prompt: str | Messages,
        settings: GenerationSettings | None = None,
        *,
        base: Any = None,
        on_token: TokenCallback | None = None,
        raw: bool = False,
        prefix_cache: PrefixCache | None = None,
        measure_kl: bool = False,
        warmup: bool = False,
        server_model: Any = None,
    ) -> GenerationResult:
        """Generate with it, through the engine its kind runs on (accelerated generation for a
        variant, plain for another model, the server's API for a served one). ``server_model``:
        the served model :meth:`open` yielded, for an engine target already started."""
        from llmlab.generation.settings import GenerationSettings

        settings = settings or GenerationSettings()
        if self.kind in REMOTE_KINDS:
            from llmlab.served.generate import served_generate

            if self.kind == ENGINE and server_model is None:
                with self.open() as sm:
                    return served_generate(sm, prompt, settings, raw=raw, on_token=on_token)
            sm = server_model if server_model is not None else self.other
            return served_generate(sm, prompt, settings, raw=raw, on_token=on_token)
        if self.kind == MODEL:
            from llmlab.generation.engine import generate

            return generate(self.other, prompt, settings, raw=raw, on_token=on_token)
        from llmlab.accel.run import generate_accelerated

        hooks = tuple(m for m in self.changes if m.kind != "accel")
        return generate_accelerated(
            base if base is not None else self.base,
            prompt,
            settings,
            self.accel,
            on_token=on_token,
            raw=raw,
            prefix_cache=prefix_cache,
            models=self.models,
            measure_kl=measure_kl,
            warmup=warmup,
            around=_applying(hooks) if hooks else None,
        )


def _applying(parts: Sequence[Modifier]):
    """Open ``parts`` in order on the model generation runs (after the accelerations)."""

    @contextmanager
    def around(lm: LoadedModel) -> Iterator[LoadedModel]:
        with ExitStack() as stack:
            for part in parts:
                lm = stack.enter_context(part.open(lm))
            yield lm

    return around


def _served(name: str, models: Mapping[str, Any], base: Any) -> Target:
    sm = models.get(name)
    if sm is None or not sm.capabilities.remote:
        served = [n for n, m in models.items() if m.capabilities.remote]
        raise LabError(
            f"no served model named {name!r} is loaded (served: {', '.join(served) or 'none'}"
            "); load one with %llm load openai:URL --model NAME"
        )
    return Target(SERVED, f"{SERVED_PREFIX}{name}", base, other=sm)


def _unknown_parts(text: str) -> list[str]:
    """Parts no kind of spec key knows (an unknown key, a bare word nobody takes)."""
    keys = set(spec_keys())
    unknown = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if "=" in part:
            if part.split("=", 1)[0].strip() not in keys:
                unknown.append(part)
        elif not owner(part).takes_bare(part):
            unknown.append(part)
    return unknown


def _could_be(
    what: str, text: str, err: LabError, models: Mapping[str, Any], kinds: Sequence[str]
) -> str:
    """One line naming what ``text`` could have been, then the parser's own reason."""
    options = []
    if MODEL in kinds:
        options.append(f"a loaded model ({', '.join(models) or 'none'})")
    if SERVED in kinds:
        served = [n for n, m in models.items() if m.capabilities.remote]
        options.append(f"served:NAME (served: {', '.join(served) or 'none'})")
    if ENGINE in kinds:
        options.append("engine:ENGINE+OPTIONS")
    options += [kind.noun for kind in SPEC_KINDS.values()]
    return f"{what} {text!r} is neither {' nor '.join(options)}: {err}"


def resolve(
    spec: Any,
    base: Any = None,
    *,
    models: Mapping[str, Any] | None = None,
    kinds: Sequence[str] = ALL_KINDS,
    what: str | None = None,
    name_options: bool = False,
) -> Target:
    """The one resolver: a spec (text, a served model, an acceleration config or a Target)
    relative to ``base`` (the model parts apply to; None when only known later).

    ``models``: where names are looked up (default: the ``%llm`` session's). ``kinds``: the
    kinds this command takes. ``what`` (``"--compare"``, ``"configuration"``) prefixes a
    refusal; an unknown spec then names, in one line, what it could have been (the loaded
    models, ``served:`` names, every kind of spec key), and so does any refusal with
    ``name_options``. Without ``what`` the parser's own line is raised as it is.
    """
    from llmlab.accel.registry import AccelConfig

    if isinstance(spec, Target):
        return spec
    if isinstance(spec, AccelConfig):
        from llmlab.targets.kinds import AccelModifier

        return Target(VARIANT, spec.label, base, parts=(AccelModifier(spec),), models=models)
    names = loaded_models(models)
    if not isinstance(spec, str) and spec is not None:
        if SERVED in kinds and spec.capabilities.remote:
            return Target(SERVED, f"{SERVED_PREFIX}{spec.name}", base, other=spec)
        return Target(MODEL, spec.name, base, other=spec)
    text = (spec or "").strip()
    if ENGINE in kinds and text.startswith(ENGINE_PREFIX):
        from llmlab.served.engines import parse_engine_config

        try:
            return Target(ENGINE, text, base, other=parse_engine_config(text))
        except LabError as err:
            if what is None:
                raise
            raise LabError(f"{what} {text!r}: {err}") from None
    if SERVED in kinds and text.startswith(SERVED_PREFIX):
        return _served(text.removeprefix(SERVED_PREFIX).strip(), names, base)
    if MODEL in kinds and text in names:
        other = names[text]
        if SERVED in kinds and other.capabilities.remote:
            return Target(SERVED, f"{SERVED_PREFIX}{text}", base, other=other)
        return Target(MODEL, text, base, other=other)
    try:
        parts = parse_parts(text or "baseline", base)
    except LabError as err:
        if what is None:
            raise
        if name_options or _unknown_parts(text):
            raise LabError(_could_be(what, text, err, names, kinds)) from None
        raise LabError(f"{what} {text!r}: {err}") from None
    return Target(VARIANT, text or "baseline", base, parts=parts, models=models)


@contextmanager
def opened(
    spec: Any,
    base: LoadedModel,
    *,
    models: Mapping[str, Any] | None = None,
    what: str = "--compare",
) -> Iterator[tuple[Any, Target]]:
    """For ``--compare``: the model ``spec`` names, opened on ``base`` (another loaded model,
    or ``base`` changed by spec parts), and its target. Refuses a model whose internals cannot
    be read here (a served one)."""
    target = resolve(
        spec, base, models=models, kinds=(VARIANT, MODEL), what=what, name_options=True
    )
    if not target.capabilities.internals:
        _ = target.other.model  # raises the model's own one-line reason
    with target.open() as lm:
        yield lm, target
