"""The configurations a sweep compares: a thin adapter over :mod:`llmlab.targets`.

A sweep only needs three things from a configuration: its label and the registry's claim,
a context manager that yields the (possibly changed) model, and a way to generate with it.
Every item of ``--configs`` is resolved by :func:`llmlab.targets.resolve` (accelerations,
another loaded model, ``served:NAME``, ``engine:ENGINE+OPTIONS``: an engine started for its
point, :mod:`llmlab.served.engines`); tests build :class:`Configuration` directly to exercise
the runner without them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmlab.errors import LabError
from llmlab.targets import ENGINE, ENGINE_PREFIX, MODEL, SERVED, SERVED_PREFIX, Target, resolve

if TYPE_CHECKING:
    from llmlab.generation.result import GenerationResult
    from llmlab.generation.settings import GenerationSettings
    from llmlab.models.loaded import LoadedModel

BASELINE = "baseline"

Opener = Callable[["LoadedModel"], contextlib.AbstractContextManager["LoadedModel"]]
Runner = Callable[..., "GenerationResult"]


@dataclass
class Configuration:
    """One point of a sweep.

    ``open(lm)`` yields the model to run (a changed copy for load-time accelerations);
    ``run(base_lm, variant_lm, prompt, settings, on_token)`` generates once with it.
    ``claimed_output_preserving`` is the registry's claim (``None``: no claim).
    ``target``: what it was resolved from (:class:`llmlab.targets.Target`; None when built
    by hand). ``usd_per_hour``: a served target's own price.
    """

    label: str
    claimed_output_preserving: bool | None
    open: Opener
    run: Runner
    kv_cache: bool = True  # False where the configuration keeps no KV cache (kv=off)
    is_baseline: bool = False
    target: Target | None = field(default=None, repr=False)
    usd_per_hour: float | None = None

    @property
    def load_label(self) -> str | None:
        """The load-time parts (``quant=int8``) that make a private weight copy, or None."""
        accel = self.target.accel if self.target is not None else None
        return accel.load_label if accel is not None and accel.load_parts else None


def split_configs(configs: str | Sequence[str]) -> list[str]:
    """``"baseline,kv=off,spec=prompt-lookup+quant=int8"`` -> one item per configuration.

    Commas separate configurations; ``+`` joins the parts of a combined one. A list is taken
    as is (each item may then use commas inside, as :func:`llmlab.accel.parse_config` does).
    """
    if isinstance(configs, str):
        items = [c.strip() for c in configs.split(",")]
    else:
        items = [str(c).strip() for c in configs]
    items = [c for c in items if c]
    if not items:
        raise LabError("no configurations given; e.g. --configs baseline,kv=off,quant=int8")
    return items


def configuration(target: Target, usd_per_hour: float | None = None) -> Configuration:
    """One sweep entry for a resolved target: opened on the sweep's model, generated with
    through the engine its kind runs on."""

    def run(base, vlm, prompt, settings: GenerationSettings, on_token=None):
        # A variant generates from the base model with its parts applied: the load-time copy
        # that open() made above is cached, so nothing is quantized twice. An engine's server
        # is the one open() started.
        return target.generate(prompt, settings, base=base, on_token=on_token, server_model=vlm)

    return Configuration(
        label=target.label,
        claimed_output_preserving=target.claim,
        open=target.open,
        run=run,
        kv_cache=target.keeps_kv_cache,
        is_baseline=target.is_baseline,
        target=target,
        usd_per_hour=usd_per_hour,
    )


def resolve_configs(
    configs: str | Sequence[str | Configuration],
    *,
    models: Mapping[str, Any] | None = None,
    prices: dict[str, float] | None = None,
    lm: LoadedModel | None = None,
) -> list[Configuration]:
    """Every configuration of a sweep, each checked before anything runs; baseline first,
    duplicates dropped. An unknown name fails here, in one line.

    Each item is a target (:mod:`llmlab.targets`): acceleration parts joined with ``+``,
    another loaded model by name, or ``served:NAME`` (or a served model object), looked up in
    ``models`` (default: the session's); ``prices[NAME]`` is a served model's US$ per hour.
    ``lm``: the sweep's model, for presets (``fast``) and drafts."""
    items = configs if not isinstance(configs, str) else split_configs(configs)
    prices = prices or {}
    resolved: list[Configuration] = []

    def add(spec: Any) -> None:
        target = resolve(spec, lm, models=models, what="configuration")
        price = None
        if target.kind == SERVED:
            price = prices.get(target.other.name, prices.get("served"))
        elif target.kind == ENGINE:  # a server started for the point
            engine = target.other
            price = prices.get(engine.label, prices.get(engine.engine, prices.get("served")))
        elif target.kind == MODEL and lm is not None and not target.tokenizer_compatible(lm):
            raise LabError(
                f"configuration {target.spec!r}: its tokenizer differs from {lm.name}'s; a "
                "sweep measures quality over the same token ids"
            )
        resolved.append(configuration(target, price))

    for item in items:
        if isinstance(item, Configuration):
            resolved.append(item)
        elif not isinstance(item, str):
            add(item)  # a served model object
        else:
            for text in split_configs([item]):
                remote = text.startswith((SERVED_PREFIX, ENGINE_PREFIX))
                add(text if remote else text.replace("+", ","))
    if not resolved:
        raise LabError("no configurations given; e.g. --configs baseline,kv=off,quant=int8")
    unique: dict[str, Configuration] = {}
    for c in resolved:
        unique.setdefault(c.label, c)
    baseline = [c for c in unique.values() if c.is_baseline]
    if not baseline:
        baseline = [configuration(resolve(BASELINE, lm, models=models))]
    return baseline[:1] + [c for c in unique.values() if not c.is_baseline]
