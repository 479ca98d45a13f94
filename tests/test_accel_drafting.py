"""Lean drafters (self-int4, hybrid), the int8 recipe, CUDA rows and first-call compile time."""

from __future__ import annotations

import pytest

from llmlab.accel import ACCELERATIONS, generate_accelerated, parse_config, variant
from llmlab.accel.drafting import DraftLength, Hybrid, SelfDraft, VerifyCost, first_layers
from llmlab.errors import LabError
from llmlab.generation.engine import generate
from llmlab.generation.settings import GenerationSettings

GREEDY = GenerationSettings(max_new_tokens=24)
REPEATING = "the cat sat on the mat. the cat sat on the mat. the cat sat on the mat. the cat"


# -- choosing the draft length --------------------------------------------------------------
def test_verify_cost_fits_a_line_once_two_lengths_are_seen():
    cost = VerifyCost()
    assert cost(5) == 1.0  # nothing seen: a neutral guess
    cost.add(2, 0.10)
    assert cost(8) == pytest.approx(0.10)  # one length: no slope yet
    for k, s in [(2, 0.10), (6, 0.18), (4, 0.14)]:
        cost.add(k, s)
    assert cost(8) == pytest.approx(0.22, rel=0.05)


def test_draft_length_follows_acceptance_and_costs():
    good = DraftLength(acceptance=0.95, draft_s=0.005)
    for k in (2, 4, 6):
        good.verify.add(k, 0.05 + 0.001 * k)  # verifying more tokens is almost free
    assert good.best() >= 6
    poor = DraftLength(acceptance=0.1, draft_s=0.02)
    poor.verify.add(1, 0.05)
    poor.verify.add(3, 0.08)
    assert poor.best() == 1
    # Expensive verification of long drafts caps the length even at high acceptance.
    capped = DraftLength(acceptance=0.9, draft_s=0.002)
    capped.verify.add(1, 0.05)
    capped.verify.add(8, 0.40)
    assert capped.best() < good.best()


def test_observe_moves_acceptance_toward_what_happened():
    length = DraftLength(acceptance=0.5)
    for _ in range(10):
        length.observe(drafted=4, accepted=4, draft_s=0.01, verify_s=0.05)
    assert length.acceptance > 0.9 and length.k > 4
    for _ in range(10):
        length.observe(drafted=length.k, accepted=0, draft_s=0.01, verify_s=0.05)
    assert length.acceptance < 0.1 and length.k == 1


# -- the drafters keep greedy output -----------------------------------------------------------
@pytest.mark.parametrize("spec", ["spec=self-int4", "spec=hybrid"])
@pytest.mark.parametrize("prompt", ["Hello there", REPEATING])
def test_self_drafts_keep_greedy_tokens(tiny_llama, spec, prompt):
    ref = generate(tiny_llama, prompt, GREEDY, raw=True)
    res = generate_accelerated(tiny_llama, prompt, GREEDY, spec, raw=True)
    assert res.token_ids == ref.token_ids
    extra = res.stats.extra
    assert extra["target_passes"] >= 1 and 0 <= extra["acceptance_rate"] <= 1
    assert res.drafts is not None and res.drafts.steps  # the per-step recording still works


def test_hybrid_uses_lookup_on_a_match_and_the_draft_otherwise(tiny_llama, monkeypatch):
    import llmlab.accel.drafting as drafting

    built: list[Hybrid] = []
    init = drafting.Hybrid.__init__

    def keep(self, *a, **k):
        init(self, *a, **k)
        built.append(self)

    monkeypatch.setattr(drafting.Hybrid, "__init__", keep)
    generate_accelerated(tiny_llama, REPEATING, GREEDY, "spec=hybrid", raw=True)
    (hybrid,) = built
    assert hybrid.lookup_steps >= 1  # the repeated sentence matches
    assert isinstance(hybrid.draft, SelfDraft)


def test_first_layers_shares_weights_and_leaves_the_model_whole(tiny_llama):
    import torch

    model = tiny_llama.model
    short = first_layers(model, 2)
    assert len(short.model.layers) == 2 and len(model.model.layers) == 4
    assert short.model.layers[0] is model.model.layers[0]
    assert short.lm_head is model.lm_head
    ids = torch.tensor([[5, 6, 7]])
    assert short(ids).logits.shape == model(ids).logits.shape
    assert first_layers(model, 10) is model


# -- int8 recipe ---------------------------------------------------------------------------------
def test_int8_recipe_is_weight_only_with_float16_sensitive_layers(tiny_llama):
    import torch

    with variant(tiny_llama, "quant=int8") as vlm:
        layer = vlm.model.model.layers[0]
        assert type(layer.self_attn.q_proj).__name__ == "_Int8WeightOnly"
        assert layer.self_attn.q_proj.weight_int8.dtype == torch.int8
        assert layer.mlp.down_proj._packed_params.dtype == torch.float16
        assert vlm.model.lm_head._packed_params.dtype == torch.float16


def test_int8_recipe_stays_close_and_panel_runs_report_kl(tiny_llama):
    res = generate_accelerated(tiny_llama, "Hello there", GREEDY, "quant=int8", measure_kl=True)
    # Random tiny weights have no outliers: per-channel int8 is all but exact here.
    assert 0 <= res.stats.extra["kl_to_base_nats"] < 0.01
    assert res.stats.extra["top1_to_base"] > 0.9
    plain = generate_accelerated(tiny_llama, "Hello there", GREEDY, "spec=prompt-lookup")
    assert "kl_to_base_nats" not in plain.stats.extra


# -- what runs where --------------------------------------------------------------------------
def test_cuda_rows_are_greyed_on_cpu_with_reasons(tiny_llama):
    quant, attn = ACCELERATIONS["quant"], ACCELERATIONS["attn"]
    ok, why = quant.value_available(tiny_llama, "int4-torchao")
    assert not ok and "CUDA" in why
    ok, why = attn.value_available(tiny_llama, "flash")
    assert not ok
    assert ACCELERATIONS["kv"].value_available(tiny_llama, "fp8")[0]


def test_cpu_kernels_and_copies_are_greyed_where_they_cannot_run(tiny_llama):
    import dataclasses

    on_cuda = dataclasses.replace(tiny_llama, device="cuda:1")
    for name, value in [("quant", "int8"), ("quant", "int4"), ("spec", "self-int4")]:
        ok, why = ACCELERATIONS[name].value_available(on_cuda, value)
        assert not ok and "CPU kernels" in why, (name, value)
    from llmlab.accel.registry import _half_model

    ok, why = _half_model(on_cuda)  # flash also needs a half-precision model
    assert not ok and "bf16/fp16" in why


def test_split_models_grey_out_load_time_changes(tiny_llama, monkeypatch):
    from llmlab.models.loaded import LoadedModel

    monkeypatch.setattr(LoadedModel, "placement", property(lambda self: "cpu 40% · disk 60%"))
    for name, value in [("quant", "int8"), ("dtype", "bf16"), ("spec", "hybrid")]:
        ok, why = ACCELERATIONS[name].value_available(tiny_llama, value)
        assert not ok and "spread over" in why
    assert ACCELERATIONS["spec"].value_available(tiny_llama, "prompt-lookup")[0]


def test_fast_preset_per_device():
    assert parse_config("fast", device="cpu").label == "spec=hybrid"
    assert parse_config("fast", device="cuda:1").label == "compile=on"
    assert parse_config("fast", device="mps").label == "spec=prompt-lookup"


def test_self_drafts_refuse_an_already_quantized_target():
    with pytest.raises(LabError, match="already quantized"):
        parse_config("spec=hybrid,quant=int8")


def test_compile_first_call_is_timed_apart(tiny_llama, monkeypatch):
    import llmlab.accel.run as run

    calls = []
    real = run.generate

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(run, "generate", counting)
    settings = GenerationSettings(max_new_tokens=3)
    first = run._compile_first(tiny_llama, "Hello", settings, True, {})
    assert "first_call_compile_s" in first and len(calls) == 1
    assert run._compile_first(tiny_llama, "Hello", settings, True, {}) == {}
    assert len(calls) == 1
