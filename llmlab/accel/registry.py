"""One registry of named, composable accelerations, and the parsed configuration of a run.

A configuration is written ``key=value,key=value`` (``"spec=prompt-lookup,quant=int8"``); each
key names one :class:`Acceleration`. What a part needs (CUDA, a package, a draft model) is checked
against a loaded model by :func:`check`; what cannot go together is refused by
:func:`parse_config` in one line.
"""

from __future__ import annotations

import importlib.util
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmlab.accel.caches import static_cache, takes_drafts
from llmlab.errors import LabError

if TYPE_CHECKING:
    from llmlab.generation.settings import GenerationSettings
    from llmlab.models.loaded import LoadedModel

#: Prompt-lookup window: how many tokens one n-gram match proposes.
PROMPT_LOOKUP_TOKENS = 10
DRAFT_PREFIX = "draft:"
#: Speculation values that draft with a quantized copy of the target itself -> its quant value.
SELF_DRAFTS = {"self-int8": "int8", "self-int4": "int4", "hybrid": "int4"}

Availability = tuple[bool, str]


def has_package(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


def _device(lm: LoadedModel | None) -> str:
    """The model's device kind (``cpu``, ``cuda``, ``mps``), or this machine's best one when
    no model is given."""
    from llmlab.devices import device_type, resolve_device

    return device_type(lm.device if lm is not None else resolve_device("auto"))


def _needs_cuda(lm: LoadedModel | None) -> Availability:
    if _device(lm) != "cuda":
        where = f"{lm.name} is on {lm.device}" if lm is not None else "this machine has none"
        return False, f"needs a CUDA GPU; {where}"
    return True, ""


def _needs_package(module: str, pip: str) -> Callable[[LoadedModel | None], Availability]:
    def check(lm: LoadedModel | None) -> Availability:
        if not has_package(module):
            return False, f"needs the {pip} package: pip install {pip}"
        return True, ""

    return check


def _all(*checks: Callable[[LoadedModel | None], Availability]):
    def check(lm: LoadedModel | None) -> Availability:
        for c in checks:
            ok, why = c(lm)
            if not ok:
                return ok, why
        return True, ""

    return check


def _fp16_device(lm: LoadedModel | None) -> Availability:
    if _device(lm) == "cpu":
        return False, "float16 has few fast CPU kernels here; use dtype=bf16 on CPU"
    return True, ""


#: Set to 1 to allow compile=on on CPU anyway (benchmarks/bench_accel.py --compile does).
ALLOW_CPU_COMPILE_ENV = "LLMLAB_ALLOW_CPU_COMPILE"


def _compiler(lm: LoadedModel | None) -> Availability:
    import os
    import shutil

    if _device(lm) != "cpu":
        return True, ""
    if not (shutil.which("g++") or shutil.which("c++")):
        return False, "torch.compile on CPU needs a C++ compiler (g++) on PATH"
    if os.environ.get(ALLOW_CPU_COMPILE_ENV) != "1":
        # Measured here: 84 s of compiling, then decode no faster (it recompiles per shape).
        return False, (
            "on CPU it compiled for 84 s and decoded slower here (benchmarks/bench_accel.py "
            f"--compile); it pays off on CUDA. Set {ALLOW_CPU_COMPILE_ENV}=1 to try anyway"
        )
    return True, ""


def _ok(lm: LoadedModel | None) -> Availability:
    return True, ""


def can_roll_back_cache(lm: LoadedModel | None) -> Availability:
    """Speculative decoding crops the cache back after rejected drafts: refuse families whose
    state transformers cannot crop (found by trying every causal-LM family, docs/families.md)."""
    import inspect

    if lm is None:
        return True, ""
    model, family = lm.model, lm.family
    if getattr(model, "_is_stateful", False):
        return False, (
            f"{family} keeps a recurrent state (Mamba / linear-attention / convolution layers) "
            "that cannot be rolled back after rejected drafts"
        )
    supports = getattr(model, "_supports_default_dynamic_cache", lambda: True)()
    if not supports or "cache" not in inspect.signature(model.forward).parameters:
        return False, f"{family} has no standard KV cache to roll back after rejected drafts"
    return takes_drafts(lm)


def _needs_cpu(lm: LoadedModel | None) -> Availability:
    if _device(lm) != "cpu":
        return False, (
            "wired to torch's CPU kernels; on CUDA use quant=int4-torchao, bnb8 or bnb4"
            if _device(lm) == "cuda"
            else f"wired to torch's CPU kernels; {lm.name if lm else 'the model'} is on "
            f"{_device(lm)}"
        )
    return True, ""


def _one_device(lm: LoadedModel | None) -> Availability:
    """Load-time changes work on a private copy of the weights; a model spread over devices
    or offloaded to disk (accelerate hooks) cannot be copied that way."""
    if lm is not None and getattr(lm, "is_split", False):
        return False, (f"{lm.name} is spread over {lm.placement}; load it on one device for this")
    return True, ""


def _half_model(lm: LoadedModel | None) -> Availability:
    """FlashAttention-2 runs in float16/bfloat16 only, and only for families that have it."""
    if lm is None or not lm.capabilities.internals:
        return True, ""
    if lm.dtype not in ("float16", "bfloat16"):
        return False, f"{lm.name} is {lm.dtype}; FlashAttention-2 needs it loaded in bf16/fp16"
    if not getattr(lm.model, "_supports_flash_attn", True):
        return False, f"{lm.family} has no FlashAttention-2 path in transformers"
    return True, ""


def _fp8_dtype(lm: LoadedModel | None) -> Availability:
    import torch

    if not hasattr(torch, "float8_e4m3fn"):
        return False, f"torch {torch.__version__} has no float8 type"
    return True, ""


def _torchao_int4(lm: LoadedModel | None) -> Availability:
    """torchao's int4 weight-only (tinygemm) packs linear layers with in-features divisible
    by its group size."""
    if lm is None or not lm.capabilities.internals:
        return True, ""
    import torch

    head = lm.model.get_output_embeddings()
    bad = [
        n
        for n, m in lm.model.named_modules()
        if isinstance(m, torch.nn.Linear) and m is not head and m.in_features % TORCHAO_GROUP
    ]
    if bad:
        return False, f"{bad[0]} has in-features not divisible by {TORCHAO_GROUP}"
    return True, ""


#: Group size of torchao's int4 weight-only quantization.
TORCHAO_GROUP = 128


def _int4_shapes(lm: LoadedModel | None) -> Availability:
    if lm is None or not lm.capabilities.internals:
        return True, ""
    from llmlab.accel.quant import int4_unpackable

    bad = int4_unpackable(lm.model)
    if bad:
        return False, (
            f"the int4 kernel cannot pack {len(bad)} linear layer(s) of {lm.name}, "
            f"e.g. {bad[0]}; use quant=int8"
        )
    return True, ""


def _lossless(lm: LoadedModel | None) -> Availability:
    """quant=lossless stores only weights already on a 4/8-bit block grid (a GGUF-converted
    model), with a C++ kernel built here once."""
    from llmlab.accel.lossless import NOT_ON_GRID, build_problem

    if problem := build_problem():
        return False, problem
    if lm is None or not lm.capabilities.internals:
        return True, ""
    if lm.dtype != "float32":
        return False, f"{lm.name} is loaded in {lm.dtype}; the grids are checked on float32 weights"
    if not _on_grid(lm.model):
        return False, NOT_ON_GRID.format(name=lm.name)
    return True, ""


def _on_grid(model: Any) -> bool:
    """:func:`llmlab.accel.lossless.any_on_grid`, remembered per model object."""
    from llmlab.accel.lossless import any_on_grid

    if model not in _ON_GRID:
        _ON_GRID[model] = any_on_grid(model)
    return _ON_GRID[model]


_ON_GRID: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _full_attention(lm: LoadedModel | None) -> Availability:
    """Quantized KV caches in transformers take only full-attention layers (GPT-OSS, Gemma 3
    and others interleave sliding-window ones)."""
    if lm is None or not lm.capabilities.internals:
        return True, ""
    kinds = set(getattr(lm.config.get_text_config(), "layer_types", None) or [])
    other = sorted(kinds - {"full_attention"})
    if other:
        return False, (
            f"quantized caches need full attention in every layer; {lm.family} has "
            f"{', '.join(other)} layers"
        )
    return True, ""


@dataclass(frozen=True)
class Acceleration:
    """One named acceleration and the values it takes.

    ``output_preserving``: by design, do its non-default values keep greedy output identical?
    ``default``: the value that means "unchanged" (not an acceleration at all).
    ``value_checks``: per value, what it needs on this machine (CUDA, a package...).
    """

    name: str
    values: tuple[str, ...]
    changes: str
    output_preserving: bool
    needs: str
    applied: str  # "load" (a changed copy of the model) or "generate" (how generate() runs)
    default: str
    value_help: dict[str, str] = field(default_factory=dict)
    value_checks: dict[str, Callable[[LoadedModel | None], Availability]] = field(
        default_factory=dict
    )
    #: Exceptions to ``output_preserving``: values that keep the output although the
    #: acceleration as a whole does not (dtype=fp32), and values that approximate although it
    #: keeps it (the quantized KV caches).
    preserving_values: tuple[str, ...] = ()
    lossy_values: tuple[str, ...] = ()

    def preserves(self, value: str) -> bool:
        if value == self.default or value in self.preserving_values:
            return True
        return self.output_preserving and value not in self.lossy_values

    def available(self, lm: LoadedModel | None = None) -> Availability:
        """Can any non-default value run for ``lm`` on this machine?"""
        reasons = []
        for value in self.values:
            if value == self.default:
                continue
            ok, why = self.value_available(lm, value)
            if ok:
                return True, ""
            reasons.append(f"{value}: {why}")
        return False, "; ".join(reasons)

    def value_available(self, lm: LoadedModel | None, value: str) -> Availability:
        key = DRAFT_PREFIX if value.startswith(DRAFT_PREFIX) else value
        return self.value_checks.get(key, _ok)(lm)

    def _preserving_text(self) -> str:
        if self.output_preserving:
            return f"yes, except {', '.join(self.lossy_values)}" if self.lossy_values else "yes"
        if self.preserving_values:
            return f"no (approximates), except {', '.join(self.preserving_values)}"
        return "no (approximates)"

    def row(self, lm: LoadedModel | None = None) -> dict[str, Any]:
        """One row of ``%llm accel list``."""
        ok, why = self.available(lm)
        greyed = [
            f"{v}: {self.value_available(lm, v)[1]}"
            for v in self.values
            if v != self.default and not self.value_available(lm, v)[0]
        ]
        here = f"no: {why}"
        if ok:
            here = f"yes, not {'; '.join(greyed)}" if greyed else "yes"
        return {
            "name": self.name,
            "values": " | ".join(self.values),
            "changes": self.changes,
            "output-preserving": self._preserving_text(),
            "applied": self.applied,
            "needs": self.needs,
            "here": here,
        }


_BNB = _all(_needs_cuda, _needs_package("bitsandbytes", "bitsandbytes"))

ACCELERATIONS: dict[str, Acceleration] = {
    a.name: a
    for a in [
        Acceleration(
            name="kv",
            values=("dynamic", "off", "static", "fp8", "int4-quanto", "int4-hqq"),
            default="dynamic",
            changes="how keys/values of past tokens are kept: recomputed (off), a growing "
            "cache (dynamic), a preallocated one (static), or a quantized one",
            output_preserving=True,
            lossy_values=("fp8", "int4-quanto", "int4-hqq"),
            needs="quantized caches: optimum-quanto or hqq (fp8 is built in)",
            applied="generate",
            value_help={
                "off": "no cache: every step recomputes the whole sequence (slow, for contrast)",
                "static": "cache preallocated to full length (what compile needs)",
                "fp8": "quantized cache, fp8 per tensor (approximates)",
                "int4-quanto": "quantized cache, int4 via optimum-quanto (approximates)",
                "int4-hqq": "quantized cache, int4 via HQQ (approximates)",
            },
            value_checks={
                "static": static_cache,
                "fp8": _all(_full_attention, _fp8_dtype),
                "int4-quanto": _all(
                    _needs_package("optimum.quanto", "optimum-quanto"), _full_attention
                ),
                "int4-hqq": _all(_needs_package("hqq", "hqq"), _full_attention),
            },
        ),
        Acceleration(
            name="prefix",
            values=("off", "on"),
            default="off",
            changes="reuses the cached keys/values of the longest prefix shared with the "
            "previous prompt of this model (chat history, a fixed system prompt)",
            output_preserving=True,
            needs="nothing",
            applied="generate",
            value_help={"on": "prefill only what is new since the last prompt"},
        ),
        Acceleration(
            name="spec",
            values=("off", "prompt-lookup", "self-int4", "hybrid", "self-int8", "draft:NAME"),
            default="off",
            changes="speculative decoding: cheap drafts checked by one target forward pass "
            "over several tokens",
            output_preserving=True,
            needs="greedy decoding; self-int4/hybrid/self-int8: the CPU kernels; draft:NAME "
            "needs a loaded model with the same tokenizer",
            applied="generate",
            value_help={
                "prompt-lookup": f"drafts up to {PROMPT_LOOKUP_TOKENS} tokens by n-gram match "
                "in the prompt (fast on summaries, edits, code)",
                "self-int4": "drafts with an int4 copy of the target itself, draft length "
                "adapted to measured acceptance and cost",
                "hybrid": "per step, prompt lookup where the context has a match and it has "
                "been paying off, else the int4 self-draft (both kinds of prompt)",
                "self-int8": "drafts with an int8 copy of the target itself",
                "draft:NAME": "drafts with another loaded model (same tokenizer)",
            },
            value_checks={
                "prompt-lookup": can_roll_back_cache,
                "self-int4": _all(can_roll_back_cache, _needs_cpu, _int4_shapes, _one_device),
                "hybrid": _all(can_roll_back_cache, _needs_cpu, _int4_shapes, _one_device),
                "self-int8": _all(can_roll_back_cache, _needs_cpu, _one_device),
                DRAFT_PREFIX: can_roll_back_cache,
            },
        ),
        Acceleration(
            name="quant",
            values=("none", "lossless", "int8", "int4", "int4-torchao", "bnb8", "bnb4"),
            default="none",
            changes="stores weights in fewer bits (less memory read per token)",
            output_preserving=False,
            preserving_values=("lossless",),  # the same weights, stored in their own grid
            needs="lossless: CPU, a C++ compiler and weights shipped quantized (GGUF); "
            "int8/int4: CPU; int4-torchao: CUDA and torchao; bnb8/bnb4: CUDA and bitsandbytes",
            applied="load",
            value_help={
                "lossless": "weights that lie exactly on a 4/8-bit block grid (a model converted "
                "from a Q4_1/Q8_0 GGUF) stored in those bits, bit-exact, multiplied from float32 "
                "activations by a small C++ kernel (CPU); other layers stay float32",
                "int8": "int8 weight-only, per output channel, bfloat16 activations inside "
                "the matmul; MLP down-projections and the output head in float16 (CPU)",
                "int4": "int4 weight-only, group size 32 (torch int4pack kernels, CPU)",
                "int4-torchao": f"torchao int4 weight-only, group size {TORCHAO_GROUP} (CUDA)",
                "bnb8": "bitsandbytes LLM.int8 (CUDA)",
                "bnb4": "bitsandbytes NF4 (CUDA)",
            },
            value_checks={
                "lossless": _all(_needs_cpu, _one_device, _lossless),
                "int8": _all(_needs_cpu, _one_device),
                "int4": _all(_needs_cpu, _int4_shapes, _one_device),
                "int4-torchao": _all(
                    _needs_cuda, _needs_package("torchao", "torchao"), _torchao_int4, _one_device
                ),
                "bnb8": _all(_BNB, _one_device),
                "bnb4": _all(_BNB, _one_device),
            },
        ),
        Acceleration(
            name="attn",
            values=("auto", "sdpa", "eager", "flash"),
            default="auto",
            changes="the attention kernel",
            output_preserving=True,
            needs="flash: CUDA, the flash-attn package and a bf16/fp16 model",
            applied="load",
            value_help={
                "auto": "as the model was loaded",
                "sdpa": "torch scaled_dot_product_attention",
                "eager": "plain matmul + softmax (what attention capture uses)",
                "flash": "FlashAttention-2",
            },
            value_checks={
                "flash": _all(_needs_cuda, _needs_package("flash_attn", "flash-attn"), _half_model)
            },
        ),
        Acceleration(
            name="dtype",
            values=("auto", "fp32", "bf16", "fp16"),
            default="auto",
            changes="the floating-point type of weights and activations (auto: as loaded)",
            output_preserving=False,
            preserving_values=("fp32",),  # the reference precision
            needs="fp16: CUDA",
            applied="load",
            value_checks={
                "fp32": _one_device,
                "bf16": _one_device,
                "fp16": _all(_fp16_device, _one_device),
            },
        ),
        Acceleration(
            name="compile",
            values=("off", "on"),
            default="off",
            changes="static cache + torch.compile of the decode step (first call compiles)",
            output_preserving=True,
            needs="CUDA to pay off (greyed on CPU: slow to compile, no faster here)",
            applied="load",
            value_checks={"on": _all(_compiler, _one_device, static_cache)},
        ),
    ]
}

#: Names accepted for a whole configuration, per device: the fastest output-preserving setup
#: measured on that kind of machine (see benchmarks/bench_accel.py and docs/accelerations.md).
PRESETS: dict[str, dict[str, str]] = {
    "fast": {"cpu": "spec=hybrid", "cuda": "compile=on", "mps": "spec=prompt-lookup"},
}

ORDER = tuple(ACCELERATIONS)
_ALIASES = {"dtype": {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}}


@dataclass(frozen=True)
class AccelConfig:
    """A parsed configuration: ``parts`` maps acceleration name -> chosen value (non-default)."""

    parts: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> str:
        return dict(self.parts).get(name, ACCELERATIONS[name].default)

    def __getattr__(self, name: str) -> str:
        if name in ACCELERATIONS:
            return self.get(name)
        raise AttributeError(name)

    @property
    def is_baseline(self) -> bool:
        return not self.parts

    @property
    def label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.parts) or "baseline"

    @property
    def output_preserving(self) -> bool:
        """The registry's claim: every part keeps greedy output identical by design."""
        return all(ACCELERATIONS[k].preserves(v) for k, v in self.parts)

    @property
    def load_parts(self) -> tuple[tuple[str, str], ...]:
        return tuple((k, v) for k, v in self.parts if ACCELERATIONS[k].applied == "load")

    @property
    def load_label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.load_parts) or "baseline"

    @property
    def draft_name(self) -> str | None:
        spec = self.get("spec")
        return spec.removeprefix(DRAFT_PREFIX) if spec.startswith(DRAFT_PREFIX) else None

    def with_part(self, name: str, value: str) -> AccelConfig:
        parts = dict(self.parts) | {name: value}
        return parse_config(",".join(f"{k}={v}" for k, v in parts.items()))

    def __str__(self) -> str:
        return self.label


def bare_part(word: str) -> str | None:
    """The ``key=value`` a bare word stands for, or None: a bare name switches an on/off
    acceleration on ("prefix" == "prefix=on"); a bare value that only one acceleration has
    means that setting ("int8" == "quant=int8")."""
    owners = [
        n for n, acc in ACCELERATIONS.items() if word in acc.values or word in _ALIASES.get(n, {})
    ]
    if word in ACCELERATIONS and "on" in ACCELERATIONS[word].values:
        return f"{word}=on"
    if len(owners) == 1 and word not in ("on", "off", "none", "auto"):
        return f"{owners[0]}={word}"
    return None


def parse_config(text: str | AccelConfig | None, *, device: str | None = None) -> AccelConfig:
    """Parse ``"key=value,..."``; ``""``/``"baseline"`` is no acceleration; ``"fast"`` is the
    preset for ``device`` (default: this machine's best device). Mistakes raise one-line
    :class:`LabError`."""
    if isinstance(text, AccelConfig):
        return text
    text = (text or "").strip()
    if text in ("", "baseline", "none"):
        return AccelConfig()
    if text in PRESETS:
        if device is None:
            from llmlab.devices import resolve_device

            device = resolve_device("auto")
        from llmlab.devices import device_type

        return parse_config(PRESETS[text][device_type(device)])
    chosen: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            part = bare_part(item)
            if part is not None:
                item = part
            else:
                raise LabError(
                    f"accel: {item!r} is not key=value; e.g. spec=prompt-lookup,quant=int8 "
                    f"(names: {', '.join(ORDER)}; presets: {', '.join(PRESETS)})"
                )
        name, value = (s.strip() for s in item.split("=", 1))
        if name not in ACCELERATIONS:
            raise LabError(f"unknown acceleration {name!r}; known: {', '.join(ORDER)}")
        acc = ACCELERATIONS[name]
        value = _ALIASES.get(name, {}).get(value, value)
        valid = value in acc.values or (
            name == "spec" and value.startswith(DRAFT_PREFIX) and len(value) > len(DRAFT_PREFIX)
        )
        if not valid:
            raise LabError(
                f"unknown value {value!r} for {name}; choose one of {' | '.join(acc.values)}"
            )
        if name in chosen and chosen[name] != value:
            raise LabError(f"{name} is given twice ({chosen[name]} and {value}); keep one")
        chosen[name] = value
    parts = tuple(
        (k, chosen[k]) for k in ORDER if k in chosen and chosen[k] != ACCELERATIONS[k].default
    )
    cfg = AccelConfig(parts)
    _check_combination(cfg)
    return cfg


def _check_combination(cfg: AccelConfig) -> None:
    """Refuse pairs that cannot run together, each with a one-line reason."""
    kv, spec, quant = cfg.get("kv"), cfg.get("spec"), cfg.get("quant")
    if kv == "off" and spec != "off":
        raise LabError(
            "spec needs a KV cache (it rolls the cache back on rejected drafts); drop kv=off"
        )
    if kv == "off" and cfg.get("prefix") == "on":
        raise LabError("prefix=on reuses the KV cache; it cannot run with kv=off")
    if kv not in ("dynamic",) and cfg.get("prefix") == "on":
        raise LabError(f"prefix=on keeps a dynamic cache between prompts; drop kv={kv}")
    if kv not in ("dynamic", "static") and cfg.get("compile") == "on":
        raise LabError(f"compile=on runs with a static cache; drop kv={kv}")
    if kv in ("static", "fp8", "int4-quanto", "int4-hqq") and spec != "off":
        raise LabError(f"speculative decoding needs a cache it can roll back; kv={kv} cannot")
    if spec != "off" and cfg.get("prefix") == "on":
        # Measured: transformers' assisted decoding does not verify drafts correctly from a
        # partly filled cache (greedy tokens changed), so the two are not combined.
        raise LabError(
            "prefix=on cannot be combined with spec= here (assisted decoding starts "
            "from an empty cache); pick one"
        )
    if cfg.get("compile") == "on" and spec != "off":
        raise LabError("compile=on (static cache) cannot roll back drafts; drop spec or compile")
    if cfg.get("compile") == "on" and cfg.get("prefix") == "on":
        raise LabError("compile=on uses a static cache; prefix=on keeps a dynamic one; pick one")
    if spec in SELF_DRAFTS and quant not in ("none", "lossless"):
        raise LabError(
            f"spec={spec} drafts with a {SELF_DRAFTS[spec]} copy of the target; with "
            f"quant={quant} the target is already quantized; use spec=prompt-lookup or drop quant"
        )
    if quant in ("lossless", "int8", "int4") and cfg.get("dtype") in ("bf16", "fp16"):
        raise LabError(f"quant={quant} runs its CPU kernels from float32 activations; drop dtype=")
    if quant in ("bnb8", "bnb4") and cfg.get("dtype") != "auto":
        raise LabError(f"quant={quant} chooses its own compute dtype; drop dtype=")
    if quant != "none" and cfg.get("compile") == "on":
        raise LabError(f"compile=on is not wired for quant={quant} here; pick one")


def check(cfg: AccelConfig, lm: LoadedModel, settings: GenerationSettings | None = None) -> None:
    """Refuse what ``lm`` on this machine cannot run, or what ``settings`` rule out (one line)."""
    for name, value in cfg.parts:
        ok, why = ACCELERATIONS[name].value_available(lm, value)
        if not ok:
            raise LabError(f"{name}={value} cannot run here: {why}")
    if settings is None:
        return
    if cfg.get("spec") != "off":
        if settings.do_sample:
            raise LabError(
                f"spec={cfg.get('spec')} is verified output-identical for greedy decoding only; "
                "drop --temperature/--top-k/--top-p, or drop spec"
            )
        if settings.n_candidates > 1:
            raise LabError(
                "speculative decoding runs one sequence; drop --best-of/--num-return-sequences"
            )


def table(lm: LoadedModel | None = None) -> list[dict[str, Any]]:
    """Rows of ``%llm accel list`` for ``lm`` (or this machine in general)."""
    return [a.row(lm) for a in ACCELERATIONS.values()]
