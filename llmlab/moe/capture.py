"""Route texts through a MoE model and record which experts each token went to (the hooks
themselves are in :mod:`llmlab.moe.recording`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llmlab.errors import LabError
from llmlab.moe.adapters import adapter_for, decoder_layers, moe_layers, routing_shape
from llmlab.moe.recording import RoutingRecorder, recording  # noqa: F401 (importable here too)
from llmlab.moe.result import MoeRouting, RoutedInput
from llmlab.tokens import token_texts

if TYPE_CHECKING:
    from llmlab.models.loaded import LoadedModel


def capture_routing(
    lm: LoadedModel,
    texts: str | Sequence[str] | Mapping[str, str],
    *,
    generate: int = 0,
    layer: int | None = None,
    untrained: bool | None = None,
) -> MoeRouting:
    """Route each text through ``lm`` and record every MoE layer's choice for every token.

    ``texts``: one string, several, or ``{name: text}`` to compare inputs (domains).
    ``generate``: also generate this many tokens greedily after each text and record the
    routing of the generated tokens (the last one is never fed back, so it has no routing).
    ``layer``: the MoE layer the views open on (a true decoder-layer index).
    ``untrained``: also route the same tokens through the untrained model (same architecture,
    init seed), for the specialisation figures; None: when the model has at most
    ``UNTRAINED_MAX_PARAMS`` parameters and is not itself random.
    """
    import torch

    from llmlab.generation.engine import encode_prompt
    from llmlab.generation.engine import generate as run_generate
    from llmlab.generation.settings import GenerationSettings

    adapter = adapter_for(lm.model)
    layers = moe_layers(lm.model, adapter)
    n_experts, top_k = routing_shape(layers[0], lm.model.config)
    named = _named(texts)
    if generate < 0:
        raise LabError("--generate takes a number of tokens ≥ 0")
    from llmlab import memory

    lengths = {name: len(lm.tokenizer(t).input_ids) for name, t in named.items()}
    if generate:  # refused before generating, as the lens and attention views do
        name, longest = max(lengths.items(), key=lambda item: item[1])
        room = lm.context_length - longest
        if generate > room:
            raise LabError(
                f"--generate {generate:,} is more than the context leaves: {lm.name} reads "
                f"{lm.context_length:,} tokens and {name!r} takes {longest:,}; give at most "
                f"{max(room, 0):,}"
            )
    tokens = sum(n + generate for n in lengths.values())
    memory.guard(memory.moe_capture(lm.model.config, tokens, layers=len(layers)), lm.device)
    indices = [m.index for m in layers]
    if layer is not None and layer not in indices:
        raise LabError(f"layer {layer} is not a MoE layer; MoE layers: {indices}")

    inputs = []
    with lm.exclusive("MoE capture"), recording(lm.model, layers) as recorder:
        for name, text in named.items():
            recorder.reset()
            prompt_ids = encode_prompt(lm, text, raw=True)[0].tolist()
            new_ids: list[int] = []
            if generate:
                result = run_generate(
                    lm, text, GenerationSettings(max_new_tokens=generate), raw=True
                )
                new_ids = result.token_ids
            else:
                with torch.inference_mode():
                    lm.model(torch.tensor([prompt_ids], device=lm.device))
            experts, weights = recorder.result()
            ids = (prompt_ids + new_ids)[: experts.shape[1]]
            if len(ids) != experts.shape[1]:
                raise LabError(f"routed {experts.shape[1]} tokens but the text has {len(ids)}")
            inputs.append(
                RoutedInput(
                    name=name,
                    text=text,
                    token_ids=ids,
                    tokens=token_texts(lm.tokenizer, ids),
                    n_prompt=len(prompt_ids),
                    experts=experts,
                    weights=weights,
                )
            )
    notes = []
    is_random = lm.spec.startswith("tiny:") or "random" in lm.source
    if is_random:
        notes.append("random weights: this routing is untrained and shows no learned structure")
    baseline, label = None, ""
    if untrained is None:
        untrained = not is_random
    if untrained:
        n_params = sum(p.numel() for p in lm.model.parameters())
        if n_params > UNTRAINED_MAX_PARAMS:
            notes.append(
                f"no untrained comparison: rebuilding {n_params / 1e9:.1f} B parameters from "
                f"the config would cost too much (limit {UNTRAINED_MAX_PARAMS / 1e6:.0f} M)"
            )
        else:
            baseline, label = _untrained_routing(lm, inputs)
    return MoeRouting(
        model=lm.name,
        family=adapter.label,
        rule=adapter.describe(),
        n_experts=n_experts,
        top_k=top_k,
        moe_layers=[m.index for m in layers],
        n_layers=len(decoder_layers(lm.model)),
        inputs=inputs,
        focus_layer=layer if layer is not None else layers[0].index,
        notes=notes,
        untrained=baseline,
        untrained_label=label,
    )


UNTRAINED_MAX_PARAMS = 300_000_000


def _untrained_routing(lm: LoadedModel, inputs: list[RoutedInput]) -> tuple[list, str]:
    """The same token ids routed through a freshly initialised twin of ``lm``'s model.

    The seed is the one the model was initialised with where its config says so
    (``llmlab_init_seed``, which the demo MoE saves), else 0; the twin is dropped as soon as
    the inputs are routed.
    """
    import torch
    from transformers import AutoModelForCausalLM

    seed = int(getattr(lm.model.config, "llmlab_init_seed", 0) or 0)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        twin = AutoModelForCausalLM.from_config(lm.model.config)
    twin.to(device=lm.device, dtype=lm.model.dtype).eval()
    out = []
    try:
        with recording(twin) as recorder, torch.inference_mode():
            for item in inputs:
                recorder.reset()
                twin(torch.tensor([item.token_ids], device=lm.device))
                out.append(recorder.result()[0])
    finally:
        del twin
    return out, f"same architecture, freshly initialised (seed {seed})"


def _named(texts: str | Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(texts, str):
        texts = [texts]
    if isinstance(texts, Mapping):
        named = dict(texts)
    else:
        named = {}
        for i, text in enumerate(texts):
            named[f"text {i + 1}"] = text
    if not named:
        raise LabError("give at least one text to route")
    for name, text in named.items():
        if not text.strip():
            raise LabError(f"{name} is empty")
    return named


def compare_routing(
    lm: LoadedModel,
    spec: Any,
    texts: str | Sequence[str] | Mapping[str, str],
    *,
    models: Mapping[str, Any] | None = None,
    generate: int = 0,
    layer: int | None = None,
) -> MoeRouting:
    """Route ``texts`` through ``lm`` and through the target ``spec`` (``experts=-3``: the
    router can no longer pick expert 3; ``quant=int8``; another loaded MoE model), side by
    side: each text appears once per variant, named ``text · baseline`` and ``text · SPEC``,
    so the views' comparison across inputs shows how the routing re-distributes."""
    from dataclasses import replace

    from llmlab.targets import opened

    base = capture_routing(lm, texts, generate=generate, layer=layer, untrained=False)
    with opened(spec, lm, models=models) as (other, target):
        changed = capture_routing(other, texts, generate=generate, layer=layer, untrained=False)
    if changed.n_experts != base.n_experts or changed.moe_layers != base.moe_layers:
        raise LabError(
            f"cannot compare routing with {target.label}: its MoE layers or expert count differ"
        )
    inputs = [replace(i, name=f"{i.name} · baseline") for i in base.inputs]
    inputs += [replace(i, name=f"{i.name} · {target.label}") for i in changed.inputs]
    notes = [*base.notes, f"each text routed twice: baseline and {target.label}"]
    return replace(base, inputs=inputs, notes=notes)
