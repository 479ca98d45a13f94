"""Targets: one spec language, one resolver, one typed result (llmlab.targets); the capability
protocol, the one weight counter and model facts (llmlab.models)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses

import pytest

from llmlab.errors import LabError
from llmlab.models.capabilities import LOCAL
from llmlab.models.facts import config_facts, facts_of, weight_bytes
from llmlab.served.model import SERVED as SERVED_CAPABILITIES
from llmlab.targets import (
    ENGINE,
    MODEL,
    SERVED,
    SPEC_KINDS,
    VARIANT,
    SpecKind,
    resolve,
)

FAST = dict(max_new_tokens=4, repeats=3, warmup=0, text="a short text to score, twice over.")


@dataclasses.dataclass
class _Served:
    """What the resolver asks of a served model: its name and capabilities."""

    name: str = "remote"
    capabilities: object = SERVED_CAPABILITIES


def _draft_of(lm, name="drafter"):
    """Another loaded model with the same tokenizer (a copy of the weights, so it may draft)."""
    return dataclasses.replace(lm, name=name, model=copy.deepcopy(lm.model))


def test_sweep_finds_a_draft_in_the_users_own_lab(tiny_llama, monkeypatch):
    """A sweep over spec=draft:NAME run from a user's own Lab() looks the draft up in that Lab,
    not in the %llm session (which here has no model at all)."""
    import llmlab.session
    from llmlab.session import Lab
    from llmlab.tradeoff import run_sweep

    monkeypatch.setattr(llmlab.session, "_default_lab", Lab())
    lab = Lab()
    lab.models["target"] = tiny_llama
    lab.models["drafter"] = _draft_of(tiny_llama)
    sweep = run_sweep(
        tiny_llama, "baseline,spec=draft:drafter", ["hello"], models=lab.models, **FAST
    )
    point = sweep.point("spec=draft:drafter")
    assert point.status == "ok", point.error
    assert point.acceptance_rate is not None and all(point.greedy_matches)


def test_each_kind_of_spec_resolves_to_a_typed_target(tiny_llama):
    other = _draft_of(tiny_llama, "other")
    models = {"tiny-llama": tiny_llama, "other": other, "remote": _Served()}
    cases = {
        "": (VARIANT, "baseline", True),
        "baseline": (VARIANT, "baseline", True),
        "quant=int8": (VARIANT, "quant=int8", False),
        "int8": (VARIANT, "quant=int8", False),  # a bare value only one key takes
        "prefix": (VARIANT, "prefix=on", True),  # a bare on/off key
        "spec=prompt-lookup,kv=dynamic": (VARIANT, "spec=prompt-lookup", True),
        "other": (MODEL, "other", None),
        "served:remote": (SERVED, "served:remote", None),
        "remote": (SERVED, "served:remote", None),  # a loaded served model by its name
        "engine:vllm+prefix-caching=on": (ENGINE, "engine:vllm+prefix-caching=on", None),
    }
    for spec, (kind, label, claim) in cases.items():
        t = resolve(spec, tiny_llama, models=models)
        assert (t.kind, t.label, t.claim) == (kind, label, claim), spec
    assert resolve("", tiny_llama, models=models).is_baseline
    assert resolve("other", tiny_llama, models=models).tokenizer_compatible(tiny_llama)
    assert not resolve("remote", tiny_llama, models=models).tokenizer_compatible(tiny_llama)
    assert resolve("remote", tiny_llama, models=models).capabilities == SERVED_CAPABILITIES
    assert resolve("kv=off", tiny_llama, models=models).keeps_kv_cache is False
    engine = resolve("engine:vllm+kv=fp8", tiny_llama, models=models)
    assert not engine.capabilities.internals and engine.weight_bytes() is None
    with pytest.raises(LabError, match=r"^configuration 'engine:vllm\+kv=int3': vllm has no"):
        resolve("engine:vllm+kv=int3", tiny_llama, models=models, what="configuration")
    # A preset stands for its parts on the base model's device.
    assert resolve("fast", tiny_llama, models=models).label == "spec=hybrid"


def test_unknown_spec_names_what_it_could_have_been(tiny_llama):
    models = {"tiny-llama": tiny_llama, "remote": _Served()}
    with pytest.raises(LabError) as err:
        resolve("warp=9", tiny_llama, models=models, what="configuration")
    message = str(err.value)
    assert "\n" not in message
    for part in (
        "configuration 'warp=9' is neither",
        "a loaded model (tiny-llama, remote)",
        "served:NAME (served: remote)",
        "an acceleration config",
        "unknown acceleration 'warp'; known: kv, prefix, spec, quant, attn, dtype, compile",
    ):
        assert part in message
    # A known key with a bad value keeps the parser's own reason after the spec.
    with pytest.raises(LabError, match=r"^configuration 'quant=int9': unknown value 'int9'"):
        resolve("quant=int9", tiny_llama, models=models, what="configuration")
    # Where only accelerations are taken (--accel), the registry's line is raised unchanged.
    with pytest.raises(LabError, match=r"^unknown acceleration 'warp'"):
        resolve("warp=9", tiny_llama, models=models, kinds=(VARIANT,))
    with pytest.raises(LabError, match="no served model named 'nope'.*served: remote"):
        resolve("served:nope", tiny_llama, models=models)


def test_open_leaves_the_base_model_exactly_as_it_was(tiny_llama):
    import torch

    before = {k: v.clone() for k, v in tiny_llama.model.state_dict().items()}
    kernel = tiny_llama.attn_implementation
    target = resolve("quant=int8,attn=eager", tiny_llama)
    with target.open() as lm:
        assert lm.model is not tiny_llama.model and lm.attn_implementation == "eager"
    assert tiny_llama.attn_implementation == kernel
    after = tiny_llama.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # Counted on the changed copy: int8 weights are smaller than the float32 ones.
    assert 0.2 * tiny_llama.weight_bytes < target.weight_bytes() < 0.7 * tiny_llama.weight_bytes


def test_a_new_kind_of_spec_key_is_one_registry_entry(tiny_llama, monkeypatch):
    """A kind registered beside the accelerations composes with them: it parses its own parts,
    opens after the load-time copy, and runs during generation."""
    from llmlab.generation.settings import GenerationSettings

    opened_on = []

    @dataclasses.dataclass(frozen=True)
    class Mark:
        label: str
        kind: str = "mark"
        output_preserving: bool | None = None

        def check(self, lm) -> None:
            pass

        @contextlib.contextmanager
        def open(self, lm):
            opened_on.append(lm.model)
            yield lm

    kind = SpecKind(
        name="mark",
        noun="a mark",
        owned_keys=lambda: ("mark",),
        takes_bare=lambda word: word == "marked",
        parse=lambda text, base: Mark(text),
        order=1,
    )
    monkeypatch.setitem(SPEC_KINDS, "mark", kind)
    t = resolve("mark=1,quant=int8", tiny_llama)
    assert [p.kind for p in t.parts] == ["accel", "mark"]  # accelerations apply first
    assert t.label == "quant=int8,mark=1" and t.claim is False  # int8 approximates
    assert resolve("mark=1", tiny_llama).claim is None  # the mark makes no claim
    assert resolve("marked", tiny_llama).label == "marked"
    with t.open() as lm:
        assert opened_on[-1] is lm.model is not tiny_llama.model  # hooked on the int8 copy
    result = t.generate("hello", GenerationSettings(max_new_tokens=3))
    assert len(opened_on) == 2 and result.stats.extra["accel"] == "quant=int8"
    with pytest.raises(LabError) as err:
        resolve("warp=1", tiny_llama, models={}, what="--compare", name_options=True)
    # Every registered kind is named (interventions register theirs too, in between).
    assert "nor an acceleration config nor " in str(err.value)
    assert "nor a mark: " in str(err.value)


def test_capabilities_replace_attribute_probes(tiny_llama):
    assert tiny_llama.capabilities == LOCAL
    assert LOCAL.internals and not LOCAL.remote and LOCAL.top_k(7) == 7
    assert SERVED_CAPABILITIES.remote and not SERVED_CAPABILITIES.internals
    assert SERVED_CAPABILITIES.top_k(50) == SERVED_CAPABILITIES.top_logprobs


def test_model_facts_in_one_place(tiny_llama):
    facts = tiny_llama.facts
    text = tiny_llama.config.get_text_config()
    assert (facts.layers, facts.heads, facts.kv_heads) == (
        text.num_hidden_layers,
        text.num_attention_heads,
        text.num_key_value_heads,
    )
    assert facts.experts is None and facts.weight_bytes == weight_bytes(tiny_llama.model)
    summary = tiny_llama.summary()
    assert (summary["layers"], summary["heads"]) == (facts.layers, facts.heads)


def test_moe_facts_name_the_experts():
    from llmlab.models.registry import load_model

    lm = load_model("tiny:mixtral")
    facts = facts_of(lm.model)
    assert (facts.experts, facts.experts_per_token) == (8, 2)
    assert config_facts(lm.config).layers == facts.layers


def _three_weight_counts(lm):
    """What %llm models, the accelerations panel and a sweep say the weights weigh."""
    from llmlab.accel import generate_accelerated
    from llmlab.devices import format_bytes
    from llmlab.generation.settings import GenerationSettings
    from llmlab.tradeoff import run_sweep

    models_row = lm.summary()["weights"]
    run = generate_accelerated(lm, "hello", GenerationSettings(max_new_tokens=2), "quant=int8")
    sweep = run_sweep(lm, "baseline", ["hello"], **(FAST | {"max_new_tokens": 2}))
    count = weight_bytes(lm.model)
    assert models_row == format_bytes(count)
    assert run.stats.extra["weight_mb_before"] == round(count / 2**20, 1)
    assert sweep.baseline.weight_bytes == count


def test_the_three_weight_counts_agree(tiny_llama):
    _three_weight_counts(tiny_llama)


@pytest.mark.slow
def test_the_three_weight_counts_agree_on_the_default_model(default_lm):
    _three_weight_counts(default_lm)


def test_load_test_takes_a_served_target(ip):
    from IPython.core.error import UsageError

    from tests.helpers import run_magic
    from tests.served_fake import MODEL, FakeServer

    server = FakeServer()
    try:
        run_magic(ip, f"load openai:{server.url} --model {MODEL} --name srv")
        run_magic(ip, "load tiny:llama")  # the active model is local: the spec names the target
        test = run_magic(ip, "load-test served:srv --concurrency 1 --requests 2 --max-tokens 2")
        assert test.target == "srv" and [lv.concurrency for lv in test.levels] == [1]
        with pytest.raises(UsageError, match=r"no served model named 'nope' .*served: srv"):
            run_magic(ip, "load-test served:nope --requests 2")
    finally:
        server.stop()
