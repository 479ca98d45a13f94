"""Routing capture on a tiny random model of every MoE family.

Two independent checks per family:
- the recorded selection equals the family's rule recomputed here from the router's logits
  (read by a separate hook on the router module);
- the experts module's actual output equals the sum over the recorded (expert, weight) pairs
  of weight × that expert's output, so the record is what the layer ran.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmlab.errors import LabError
from llmlab.models.registry import load_model
from llmlab.moe import capture_routing, moe_layers, recording
from llmlab.moe.adapters import adapter_for

FAMILIES = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "granitemoe", "deepseek_v3", "gpt_oss"]
TEXT = "def fib(n): return n if n < 2 else fib(n-1) + fib(n-2)"


def _softmax_topk(logits, router, renorm):
    probs = torch.softmax(logits.float(), dim=-1)
    weights, index = probs.topk(router.top_k, dim=-1)
    if renorm:
        weights = weights / weights.sum(-1, keepdim=True)
    return index, weights


def _topk_softmax(logits, router):
    top, index = logits.float().topk(router.top_k, dim=-1)
    return index, torch.softmax(top, dim=-1)


def _deepseek(logits, router):
    scores = torch.sigmoid(logits.float())
    choice = scores + router.e_score_correction_bias
    n_group, per_group = router.num_group, router.num_experts // router.num_group
    grouped = choice.view(-1, n_group, per_group)
    group_score = grouped.topk(2, dim=-1).values.sum(-1)  # (T, groups): best two per group
    kept = group_score.topk(router.topk_group, dim=-1).indices
    mask = torch.zeros_like(group_score, dtype=torch.bool).scatter_(1, kept, True)
    choice = choice.masked_fill(~mask.repeat_interleave(per_group, dim=1), float("-inf"))
    index = choice.topk(router.top_k, dim=-1).indices
    weights = scores.gather(1, index)
    if router.norm_topk_prob:
        weights = weights / weights.sum(-1, keepdim=True)
    return index, weights * router.routed_scaling_factor


RULES = {
    "mixtral": lambda lg, r: _softmax_topk(lg, r, renorm=True),
    "qwen2_moe": lambda lg, r: _softmax_topk(lg, r, renorm=r.norm_topk_prob),
    "qwen3_moe": lambda lg, r: _softmax_topk(lg, r, renorm=r.norm_topk_prob),
    "olmoe": lambda lg, r: _softmax_topk(lg, r, renorm=False),
    "granitemoe": _topk_softmax,
    "deepseek_v3": _deepseek,
    "gpt_oss": _topk_softmax,  # the router's logits already include its bias
}


def _load(family):
    # GPT-OSS has no SDPA attention in transformers 5.24.
    attn = "eager" if family == "gpt_oss" else "sdpa"
    lm = load_model(f"tiny:{family}", attn_implementation=attn)
    if family == "deepseek_v3":
        # A nonzero selection bias, so the test sees choice and weight use different scores.
        for layer in moe_layers(lm.model, adapter_for(lm.model)):
            torch.manual_seed(layer.index)
            layer.router.e_score_correction_bias.copy_(torch.randn(layer.router.num_experts))
    return lm


def _sorted(index, weights):
    order = weights.argsort(dim=-1, descending=True, stable=True)
    return index.gather(-1, order).numpy(), weights.gather(-1, order).numpy()


@pytest.mark.parametrize("family", FAMILIES)
def test_recorded_selection_is_what_the_layer_ran(family):
    lm = _load(family)
    layers = moe_layers(lm.model, adapter_for(lm.model))
    logits, expert_io = {}, {}
    handles = []
    for layer in layers:
        handles.append(
            layer.router.register_forward_hook(
                lambda m, a, out, i=layer.index: logits.__setitem__(i, out[0].detach())
            )
        )
        handles.append(
            layer.experts.register_forward_hook(
                lambda m, a, out, i=layer.index: expert_io.__setitem__(i, (a[0], out.detach()))
            )
        )
    try:
        routing = capture_routing(lm, TEXT)
    finally:
        for h in handles:
            h.remove()

    n_tokens = len(lm.tokenizer(TEXT).input_ids)
    assert routing.experts.shape == (len(layers), n_tokens, layers[0].router.top_k)
    assert routing.moe_layers == [m.index for m in layers]
    for pos, layer in enumerate(layers):
        # 1. The family's rule, recomputed from the router's logits, gives the same choice.
        ref_index, ref_weights = _sorted(*RULES[family](logits[layer.index], layer.router))
        np.testing.assert_array_equal(routing.experts[pos], ref_index)
        np.testing.assert_allclose(routing.weights[pos], ref_weights, rtol=1e-5, atol=1e-6)

        # 2. The experts' real output is the weighted sum of the recorded experts' outputs.
        hidden, actual = expert_io[layer.index]
        index = torch.from_numpy(routing.experts[pos]).long()
        weights = torch.from_numpy(routing.weights[pos])
        rebuilt = torch.zeros_like(actual)
        with torch.no_grad():
            for rank in range(index.shape[1]):
                one = torch.ones(index.shape[0], 1, dtype=hidden.dtype)
                alone = layer.experts(hidden, index[:, rank : rank + 1], one)
                rebuilt += weights[:, rank : rank + 1] * alone
        torch.testing.assert_close(rebuilt, actual, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_weights_follow_the_family_rule(family):
    lm = _load(family)
    routing = capture_routing(lm, TEXT)
    sums = routing.weights.sum(-1)
    assert (np.diff(routing.weights, axis=-1) <= 1e-7).all(), "heaviest choice first"
    assert all(len(set(row)) == routing.top_k for row in routing.experts.reshape(-1, routing.top_k))
    router = moe_layers(lm.model, adapter_for(lm.model))[0].router
    if family in ("mixtral", "granitemoe", "gpt_oss", "qwen3_moe"):
        np.testing.assert_allclose(sums, 1.0, rtol=1e-5)  # renormalised / softmax over k
    elif family in ("olmoe", "qwen2_moe"):
        assert (sums < 1).all()  # raw softmax mass of the k chosen
    elif family == "deepseek_v3":
        np.testing.assert_allclose(sums, router.routed_scaling_factor, rtol=1e-5)
        per_group = router.num_experts // router.num_group
        groups = routing.experts // per_group
        assert all(len(set(g)) <= router.topk_group for g in groups.reshape(-1, routing.top_k))


def test_true_layer_index_skips_dense_layers():
    assert capture_routing(_load("qwen2_moe"), "abc").moe_layers == [1, 2, 3]
    assert capture_routing(_load("qwen3_moe"), "abc").moe_layers == [0, 1, 3]
    assert capture_routing(_load("deepseek_v3"), "abc").moe_layers == [1, 2, 3]


def test_generation_is_recorded_at_the_right_positions():
    lm = _load("mixtral")
    during = capture_routing(lm, "The experts", generate=8)
    item = during.inputs[0]
    # The last generated token is never fed back, so it has no routing.
    assert item.n_prompt == len(lm.tokenizer("The experts").input_ids)
    assert item.n_tokens == item.n_prompt + 8 - 1
    # One forward over the same tokens routes them the same way (prefill = one pass).
    with recording(lm.model) as recorder, torch.inference_mode():
        lm.model(torch.tensor([item.token_ids]))
    experts, weights = recorder.result()
    agree = (experts == item.experts).all(-1).mean()
    assert agree > 0.95, agree
    np.testing.assert_allclose(weights, item.weights, atol=1e-3)


def test_hooks_are_removed_even_when_the_run_fails():
    lm = _load("olmoe")
    layers = moe_layers(lm.model, adapter_for(lm.model))
    with pytest.raises(RuntimeError), recording(lm.model):
        assert all(len(m.experts._forward_pre_hooks) == 1 for m in layers)
        raise RuntimeError("boom")
    assert all(not m.experts._forward_pre_hooks for m in layers)
    capture_routing(lm, "abc")
    assert all(not m.experts._forward_pre_hooks for m in layers)


def test_dense_model_says_it_has_no_experts(tiny_llama):
    with pytest.raises(LabError, match="this model has no experts"):
        capture_routing(tiny_llama, "hello")


def test_several_inputs_and_layer_choice():
    lm = _load("olmoe")
    routing = capture_routing(lm, {"code": "x = 1", "prose": "the cat sat"}, layer=2)
    assert [i.name for i in routing.inputs] == ["code", "prose"]
    assert routing.experts.shape[1] == routing.n_tokens == 5 + 11
    assert routing.focus_layer == 2
    with pytest.raises(LabError, match="not a MoE layer"):
        capture_routing(_load("deepseek_v3"), "abc", layer=0)
    with pytest.raises(LabError, match="empty"):
        capture_routing(lm, ["abc", "  "])
