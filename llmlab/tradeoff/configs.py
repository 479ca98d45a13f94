"""The configurations a sweep compares: a thin adapter over :mod:`llmlab.accel`.

A sweep only needs three things from a configuration: its label and the registry's claim,
a context manager that yields the (possibly changed) model, and a way to generate with it.
Tests build :class:`Configuration` directly to exercise the runner without the registry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmlab.errors import LabError

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
    """

    label: str
    claimed_output_preserving: bool | None
    open: Opener
    run: Runner
    kv_cache: bool = True  # False where the configuration keeps no KV cache (kv=off)
    is_baseline: bool = False
    accel: Any = field(default=None, repr=False)


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


def accel_configuration(text: str) -> Configuration:
    """Resolve one item of a sweep list through the accelerations registry."""
    from llmlab.accel import generate_accelerated, parse_config, variant

    cfg = parse_config(text.replace("+", ","))

    @contextlib.contextmanager
    def open_variant(lm: LoadedModel) -> Iterator[LoadedModel]:
        with variant(lm, cfg) as vlm:
            yield vlm

    def run(base, vlm, prompt, settings: GenerationSettings, on_token=None):
        # generate_accelerated applies the load-time parts itself, reusing the copy that
        # variant() made above (the registry caches it), so nothing is quantized twice.
        return generate_accelerated(base, prompt, settings, cfg, on_token=on_token)

    return Configuration(
        label=cfg.label,
        claimed_output_preserving=cfg.output_preserving,
        open=open_variant,
        run=run,
        kv_cache=cfg.get("kv") != "off",
        is_baseline=cfg.is_baseline,
        accel=cfg,
    )


def resolve_configs(
    configs: str | Sequence[str | Configuration],
    *,
    models: dict[str, Any] | None = None,
    prices: dict[str, float] | None = None,
) -> list[Configuration]:
    """Every configuration of a sweep, each checked before anything runs; baseline first,
    duplicates dropped. An unknown name fails here, in one line.

    ``served:NAME`` (or a served model object) is a served target (:mod:`llmlab.served`),
    looked up in ``models`` (default: the session's); ``prices[NAME]`` is its US$ per hour."""
    from llmlab.served.tradeoff import served_target

    items = configs if not isinstance(configs, str) else split_configs(configs)
    resolved: list[Configuration] = []
    for item in items:
        if isinstance(item, Configuration):
            resolved.append(item)
            continue
        if getattr(item, "served", False):
            resolved.append(served_target(item, models, prices))
            continue
        for text in split_configs([item]):
            if text.startswith("served:"):
                resolved.append(served_target(text, models, prices))
                continue
            try:
                resolved.append(accel_configuration(text))
            except LabError as err:
                raise LabError(f"configuration {text!r}: {err}") from None
    if not resolved:
        raise LabError("no configurations given; e.g. --configs baseline,kv=off,quant=int8")
    unique: dict[str, Configuration] = {}
    for c in resolved:
        unique.setdefault(c.label, c)
    baseline = [c for c in unique.values() if c.is_baseline]
    if not baseline:
        baseline = [accel_configuration(BASELINE)]
    return baseline[:1] + [c for c in unique.values() if not c.is_baseline]
