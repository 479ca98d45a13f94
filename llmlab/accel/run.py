"""Generate with an acceleration configuration, through the same engine as plain generation.

Generate-time parts become ``model.generate`` arguments (cache kind, prompt lookup, assistant
model, compile config); load-time parts come from :func:`llmlab.accel.variant.variant`. The
statistics gain what the acceleration is about: acceptance rate and tokens per target forward
pass for speculation, reused prefix tokens and the TTFT saved for the prefix cache, weight
memory for quantization.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmlab.accel.lookup import MAX_NGRAM
from llmlab.accel.prefix import PrefixCache
from llmlab.accel.registry import PROMPT_LOOKUP_TOKENS, AccelConfig, check, parse_config
from llmlab.accel.spec_trace import DraftRecorder
from llmlab.accel.variant import changed_copy, variant
from llmlab.errors import LabError
from llmlab.generation.engine import Messages, TokenCallback, encode_prompt, generate
from llmlab.generation.settings import GenerationSettings

if TYPE_CHECKING:
    from llmlab.generation.result import GenerationResult
    from llmlab.models.loaded import LoadedModel

_prefix_caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def prefix_cache_for(lm: LoadedModel) -> PrefixCache:
    """The module-wide prefix cache of ``lm`` (used when the caller keeps none of its own)."""
    return _prefix_caches.setdefault(lm.model, PrefixCache())


@dataclass
class _DraftCounter:
    rounds: int = 0  # target forward passes (each verifies one batch of drafts)
    proposed: int = 0  # draft tokens proposed in all
    recorder: DraftRecorder = field(default_factory=DraftRecorder)  # per-step drafts (views)


@contextmanager
def _counting_drafts(model: Any) -> Iterator[_DraftCounter]:
    """Count drafted tokens and verification rounds by wrapping the candidate generator that
    transformers builds for this call (an instance attribute, removed on exit)."""
    counter = _DraftCounter()
    make = model._get_candidate_generator

    def counted_generator(*args: Any, **kwargs: Any) -> Any:
        from transformers.generation.candidate_generator import PromptLookupCandidateGenerator

        from llmlab.accel.lookup import strict_get_candidates

        gen = make(*args, **kwargs)
        if isinstance(gen, PromptLookupCandidateGenerator):
            gen.get_candidates = strict_get_candidates.__get__(gen)
        get = gen.get_candidates

        def get_candidates(input_ids: Any, *a: Any, **k: Any) -> Any:
            ids, logits = get(input_ids, *a, **k)
            counter.rounds += 1
            counter.proposed += ids.shape[1] - input_ids.shape[1]
            return ids, logits

        gen.get_candidates = get_candidates
        return counter.recorder.attach(gen)

    model._get_candidate_generator = counted_generator
    try:
        yield counter
    finally:
        del model._get_candidate_generator


@contextmanager
def _generation_config_kept(lm: LoadedModel | None) -> Iterator[None]:
    """transformers writes its adapted draft length back into the assistant's generation
    config; restore it so the draft model carries nothing over."""
    if lm is None:
        yield
        return
    saved = copy.deepcopy(lm.model.generation_config)
    try:
        yield
    finally:
        lm.model.generation_config = saved


def same_tokenizer(a: Any, b: Any) -> bool:
    return a is b or (len(a) == len(b) and a.get_vocab() == b.get_vocab())


def resolve_draft(
    lm: LoadedModel, cfg: AccelConfig, models: dict[str, LoadedModel] | None
) -> LoadedModel | None:
    """The draft model of cfg's ``spec`` (None without one); refuses a different tokenizer."""
    spec = cfg.get("spec")
    if spec == "self-int8":
        return changed_copy(lm, parse_config("quant=int8"))
    name = cfg.draft_name
    if name is None:
        return None
    if models is None:
        from llmlab.session import default_lab

        models = default_lab().models
    if name not in models:
        raise LabError(
            f"spec=draft:{name}: no model named {name!r} is loaded "
            f"(loaded: {', '.join(models) or 'none'}); %llm load it first"
        )
    draft = models[name]
    if draft.model is lm.model:
        raise LabError(f"spec=draft:{name} drafts with the target itself; pick a smaller model")
    if not same_tokenizer(draft.tokenizer, lm.tokenizer):
        raise LabError(
            f"spec=draft:{name}: its tokenizer differs from {lm.name}'s; drafts must share the "
            "tokenizer (universal assisted decoding is not wired here); use spec=prompt-lookup"
        )
    if draft.device != lm.device:
        raise LabError(f"spec=draft:{name} is on {draft.device} but {lm.name} on {lm.device}")
    return draft


def generate_kwargs(cfg: AccelConfig, device: str) -> dict[str, Any]:
    """``model.generate`` arguments for cfg's generate-time parts (and compile)."""
    kwargs: dict[str, Any] = {}
    kv = cfg.get("kv")
    if kv == "off":
        kwargs["use_cache"] = False
    elif kv == "static":
        kwargs["cache_implementation"] = "static"
    elif kv == "fp8":
        kwargs.update(cache_implementation="quantized", cache_config={"backend": "fp8"})
    elif kv in ("int4-quanto", "int4-hqq"):
        backend = kv.removeprefix("int4-")
        kwargs.update(
            cache_implementation="quantized", cache_config={"backend": backend, "nbits": 4}
        )
    if cfg.get("spec") == "prompt-lookup":
        kwargs["prompt_lookup_num_tokens"] = PROMPT_LOOKUP_TOKENS
        kwargs["max_matching_ngram_size"] = MAX_NGRAM
    if cfg.get("compile") == "on":
        from transformers import CompileConfig

        # CUDA: transformers' default (reduce-overhead = CUDA graphs). CPU: plain inductor, and
        # transformers only compiles off-CUDA when told to (_compile_all_devices).
        compile_config = CompileConfig() if device == "cuda" else CompileConfig(mode="default")
        compile_config._compile_all_devices = True
        kwargs.update(cache_implementation="static", compile_config=compile_config)
    return kwargs


def generate_accelerated(
    lm: LoadedModel,
    prompt: str | Messages,
    settings: GenerationSettings | None = None,
    cfg: AccelConfig | str | None = None,
    on_token: TokenCallback | None = None,
    raw: bool = False,
    *,
    prefix_cache: PrefixCache | None = None,
    models: dict[str, LoadedModel] | None = None,
) -> GenerationResult:
    """Generate from ``lm`` with ``cfg`` applied; ``lm`` is unchanged afterwards.

    ``prefix_cache``: where prefix=on keeps its KV (default: one per model in this module).
    ``models``: where ``spec=draft:NAME`` finds NAME (default: the ``%llm`` session's models).
    """
    cfg = parse_config(cfg, device=lm.device)
    settings = settings or GenerationSettings()
    check(cfg, lm, settings)
    draft = resolve_draft(lm, cfg, models)
    kwargs = generate_kwargs(cfg, lm.device)
    speculative = cfg.get("spec") != "off"
    with (
        variant(lm, cfg) as vlm,
        _generation_config_kept(draft),
        _counting_drafts(vlm.model) as drafts,
    ):
        if draft is not None:
            kwargs["assistant_model"] = draft.model
        prefix, reused = None, 0
        if cfg.get("prefix") == "on":
            prefix = prefix_cache if prefix_cache is not None else prefix_cache_for(lm)
            prompt_ids = encode_prompt(vlm, prompt, raw=raw)[0].tolist()
            key = f"{id(lm.model)}:{cfg.load_label}"  # the KV is only valid for these weights
            kwargs["cache"], reused = prefix.take(prompt_ids, key, vlm.model.config)
        result = generate(vlm, prompt, settings, raw=raw, on_token=on_token, generate_kwargs=kwargs)
    extra: dict[str, Any] = {"accel": cfg.label}
    if speculative and drafts.rounds:
        new = result.stats.new_tokens
        accepted = drafts.recorder.accepted  # exact, also when the length limit cut the last step
        extra["drafted_tokens"] = drafts.proposed
        extra["acceptance_rate"] = round(accepted / drafts.proposed, 3) if drafts.proposed else 0.0
        extra["tokens_per_target_pass"] = round(new / drafts.rounds, 2)
        extra["target_passes"] = drafts.rounds
        result.drafts = drafts.recorder.trace(lm.name, cfg.label, lm.tokenizer)
    if prefix is not None:
        _record_prefix(prefix, key, prompt_ids, result, kwargs["cache"], reused, extra)
    if cfg.get("quant") != "none":
        from llmlab.accel.quant import weight_bytes

        extra["weight_mb"] = round(weight_bytes(vlm.model) / 2**20, 1)
        extra["weight_mb_before"] = round(weight_bytes(lm.model) / 2**20, 1)
    result.stats.extra.update(extra)
    return result


def _record_prefix(
    prefix: PrefixCache,
    key: str,
    prompt_ids: list[int],
    result: GenerationResult,
    cache: Any,
    reused: int,
    extra: dict[str, Any],
) -> None:
    stats = result.stats
    if stats.stopped == "interrupted":
        prefix.clear()
        return
    prefix.store(key, prompt_ids + result.token_ids, cache)
    extra["prefix_reused_tokens"] = reused
    if reused == 0 and stats.ttft_s:
        prefix.prefill_s_per_token = stats.ttft_s / max(stats.prompt_tokens, 1)
    elif reused and prefix.prefill_s_per_token:
        extra["ttft_saved_ms_est"] = round(reused * prefix.prefill_s_per_token * 1000, 1)
