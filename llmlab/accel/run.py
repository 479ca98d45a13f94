"""Generate with an acceleration configuration, through the same engine as plain generation.

Generate-time parts become ``model.generate`` arguments (cache kind, prompt lookup, assistant
model, compile config); load-time parts come from :func:`llmlab.accel.variant.variant`. The
statistics gain what the acceleration is about: acceptance rate and tokens per target forward
pass for speculation, reused prefix tokens and the TTFT saved for the prefix cache, weight
memory for quantization.
"""

from __future__ import annotations

import copy
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmlab.accel.lookup import MAX_NGRAM
from llmlab.accel.prefix import PrefixCache
from llmlab.accel.registry import (
    PROMPT_LOOKUP_TOKENS,
    SELF_DRAFTS,
    AccelConfig,
    check,
    parse_config,
)
from llmlab.accel.spec_trace import DraftRecorder
from llmlab.accel.variant import changed_copy, take_build_seconds, variant
from llmlab.errors import LabError
from llmlab.generation.engine import Messages, TokenCallback, encode_prompt, generate
from llmlab.generation.settings import GenerationSettings
from llmlab.models.lookup import loaded_models, same_tokenizer

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
def _counting_drafts(model: Any, own: Callable[..., Any] | None = None) -> Iterator[_DraftCounter]:
    """Count drafted tokens and verification rounds by wrapping the candidate generator that
    transformers builds for this call (an instance attribute, removed on exit). ``own``, when
    given, builds llmlab's own generator instead (see :func:`own_drafter`)."""
    counter = _DraftCounter()
    make = model._get_candidate_generator

    def counted_generator(*args: Any, **kwargs: Any) -> Any:
        from transformers.generation.candidate_generator import PromptLookupCandidateGenerator

        from llmlab.accel.lookup import strict_get_candidates

        gen = own(**kwargs) if own is not None else make(*args, **kwargs)
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


def resolve_draft(
    lm: LoadedModel, cfg: AccelConfig, models: dict[str, LoadedModel] | None
) -> LoadedModel | None:
    """The draft model of cfg's ``spec`` (None without one); refuses a different tokenizer."""
    spec = cfg.get("spec")
    if spec in SELF_DRAFTS:
        return changed_copy(lm, parse_config(f"quant={SELF_DRAFTS[spec]}"))
    name = cfg.draft_name
    if name is None:
        return None
    models = loaded_models(models)
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


def own_drafter(cfg: AccelConfig, draft: LoadedModel | None) -> Callable[..., Any] | None:
    """A factory of llmlab's lean drafters (:mod:`llmlab.accel.drafting`) for cfg's spec, called
    with the arguments transformers passes to ``_get_candidate_generator``; None where
    transformers' own generator is used (prompt lookup alone)."""
    if draft is None:
        return None
    hybrid = cfg.get("spec") == "hybrid"

    def build(generation_config: Any, **_: Any) -> Any:
        from transformers.generation.candidate_generator import PromptLookupCandidateGenerator

        from llmlab.accel.drafting import Hybrid, SelfDraft
        from llmlab.accel.lookup import strict_get_candidates

        gc = generation_config
        drafter = SelfDraft(draft.model, gc._eos_token_tensor, gc.max_length)
        if not hybrid:
            return drafter
        lookup = PromptLookupCandidateGenerator(
            eos_token_id=gc._eos_token_tensor,
            num_output_tokens=PROMPT_LOOKUP_TOKENS,
            max_matching_ngram_size=MAX_NGRAM,
            max_length=gc.max_length,
            vocab_size=draft.model.config.get_text_config().vocab_size,
        )
        lookup.get_candidates = strict_get_candidates.__get__(lookup)
        return Hybrid(lookup, drafter)

    return build


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
    measure_kl: bool = False,
    warmup: bool = False,
    around: Callable[[LoadedModel], AbstractContextManager[LoadedModel]] | None = None,
) -> GenerationResult:
    """Generate from ``lm`` with ``cfg`` applied; ``lm`` is unchanged afterwards.

    ``prefix_cache``: where prefix=on keeps its KV (default: one per model in this module).
    ``models``: where ``spec=draft:NAME`` finds NAME (default: the ``%llm`` session's models,
    see :mod:`llmlab.models.lookup`).
    ``measure_kl``: for weight-changing configs (quant, dtype), also report the teacher-forced
    KL to ``lm`` over this prompt and answer (two extra forward passes), as the panel does.
    ``warmup``: the first time this configuration runs on ``lm`` in this session, run a short
    untimed generation first (see :func:`_warm_up_first`), as a view timing one run should.

    A changed copy (quantized weights, a self-draft) built for this call reports its build
    time apart as ``build_s``; it is never part of TTFT or decode speed.

    ``around``: a context manager applied to the (changed) model for the generation, after
    the load-time parts (how :mod:`llmlab.targets` runs parts of other kinds, such as
    interventions' hooks, together with the accelerations).
    """
    started = time.perf_counter()  # copies built before this call are not this call's
    cfg = parse_config(cfg, device=lm.device)
    settings = settings or GenerationSettings()
    check(cfg, lm, settings)
    warmed = _warm_up_first(lm, prompt, settings, cfg, raw, models, around) if warmup else {}
    draft = resolve_draft(lm, cfg, models)
    kwargs = generate_kwargs(cfg, lm.device)
    speculative = cfg.get("spec") != "off"
    with (
        variant(lm, cfg) as changed,
        (around or nullcontext)(changed) as vlm,
        _generation_config_kept(draft),
        _counting_drafts(vlm.model, own_drafter(cfg, draft)) as drafts,
    ):
        built = [s for m in (vlm, draft) if m is not None and (s := take_build_seconds(m, started))]
        if draft is not None:
            kwargs["assistant_model"] = draft.model
        prefix, reused = None, 0
        if cfg.get("prefix") == "on":
            prefix = prefix_cache if prefix_cache is not None else prefix_cache_for(lm)
            prompt_ids = encode_prompt(vlm, prompt, raw=raw)[0].tolist()
            key = f"{id(lm.model)}:{cfg.load_label}"  # the KV is only valid for these weights
            kwargs["cache"], reused = prefix.take(prompt_ids, key, vlm.model.config)
        compiled = (
            _compile_first(vlm, prompt, settings, raw, kwargs) if cfg.get("compile") == "on" else {}
        )
        result = generate(vlm, prompt, settings, raw=raw, on_token=on_token, generate_kwargs=kwargs)
    extra: dict[str, Any] = {"accel": cfg.label, **warmed, **compiled}
    if built:
        extra["build_s"] = round(sum(built), 2)
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
    if measure_kl and _weights_changed(cfg) and result.token_ids:
        extra.update(_kl_to_base(lm, vlm, prompt, result, raw))
    if cfg.get("quant") != "none":
        from llmlab.models.facts import weight_bytes

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


def _warm_up_first(
    lm: LoadedModel,
    prompt: str | Messages,
    settings: GenerationSettings,
    cfg: AccelConfig,
    raw: bool,
    models: dict[str, LoadedModel] | None,
    around: Callable[[LoadedModel], AbstractContextManager[LoadedModel]] | None = None,
) -> dict[str, float]:
    """The first run of ``cfg`` on ``lm`` in this session: a short generation with the same
    configuration (same prompt, a throwaway prefix cache), not timed as latency, so the
    measured run does not pay the first forward pass's one-off costs. Returns its seconds as
    ``warmup_s`` and any copy built for it as ``build_s`` (apart); {} when already warm.
    compile=on warms up per shape in :func:`_compile_first` instead (a short generation would
    compile another shape)."""
    from llmlab.measure.latency import warm_up_once, warmup_settings

    if cfg.get("compile") == "on":
        return {}
    first: dict[str, Any] = {}

    def short_run() -> None:
        res = generate_accelerated(
            lm,
            prompt,
            warmup_settings(settings),
            cfg,
            raw=raw,
            prefix_cache=PrefixCache(),
            models=models,
            around=around,
        )
        first.update(res.stats.extra)

    seconds = warm_up_once(lm.model, ("accel", cfg.label), short_run, lm.device)
    if seconds is None:
        return {}
    built = first.get("build_s", 0.0)
    warm = round(max(seconds - built, 0.0), 2)  # both rounded to 0.01 s: never below 0
    return {"warmup_s": warm} | ({"build_s": built} if built else {})


def _compile_first(
    vlm: LoadedModel, prompt: str | Messages, settings: GenerationSettings, raw: bool, kwargs: dict
) -> dict[str, float]:
    """compile=on: the first call for a (prompt length, new tokens) shape compiles (tens of
    seconds); run it once untimed-as-latency and report its time apart, so the measured call's
    TTFT and decode speed are the compiled model's."""
    from llmlab.measure.latency import warm_up_once

    shape = (encode_prompt(vlm, prompt, raw=raw).shape[1], settings.max_new_tokens)
    seconds = warm_up_once(
        vlm.model,
        ("compile", shape),
        lambda: generate(vlm, prompt, settings, raw=raw, generate_kwargs=dict(kwargs)),
        vlm.device,
    )
    return {} if seconds is None else {"first_call_compile_s": round(seconds, 1)}


def _weights_changed(cfg: AccelConfig) -> bool:
    return cfg.get("quant") != "none" or cfg.get("dtype") not in ("auto", "fp32")


def _kl_to_base(
    lm: LoadedModel, vlm: LoadedModel, prompt: str | Messages, result: Any, raw: bool
) -> dict[str, float]:
    """Teacher-forced KL(lm || variant) and top-1 agreement over the answer's positions."""
    import torch

    from llmlab.measure.quality import compare_logprobs, continuation_logprobs

    prompt_ids = encode_prompt(lm, prompt, raw=raw)[0].cpu()
    ids = torch.cat([prompt_ids, torch.tensor(result.token_ids, dtype=prompt_ids.dtype)])
    start = prompt_ids.shape[0]
    agreement = compare_logprobs(
        continuation_logprobs(lm.model, ids, start), continuation_logprobs(vlm.model, ids, start)
    )
    from llmlab.measure.stats import Spread

    # The mean over the answer's positions with its interval: a bare mean of a skewed
    # per-position KL says nothing of how sure it is (n is the answer's length).
    bar = Spread(agreement.kl, headline="mean").interval
    return {
        "kl_to_base_nats": float(f"{agreement.mean_kl:.3g}"),  # 1.7e-06 stays, not 0.0
        **({"kl_to_base_ci95": [float(f"{v:.3g}") for v in bar]} if bar else {}),
        "kl_positions": len(agreement.kl),
        "top1_to_base": round(agreement.top1_agreement, 3),
    }
