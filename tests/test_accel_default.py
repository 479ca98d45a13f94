"""Accelerations on the real default model: output-preserving ones give identical greedy tokens."""

from __future__ import annotations

import pytest

from llmlab.accel import PrefixCache, generate_accelerated, parse_config
from llmlab.generation.engine import generate
from llmlab.generation.settings import GenerationSettings

pytestmark = pytest.mark.slow

GREEDY = GenerationSettings(max_new_tokens=40)
PROMPTS = [
    "What is the capital of France?",
    # Longer than the prompt-lookup window and than a self-draft round: drafts get rejected
    # part-way and the cache is rolled back many times.
    "Summarise: The Great Barrier Reef is the world's largest coral reef system. It is composed "
    "of over 2,900 individual reefs and 900 islands stretching for over 2,300 kilometres. "
    "The reef is located in the Coral Sea, off the coast of Queensland, Australia.",
]
PRESERVING = [
    "kv=static",
    "prefix=on",
    "spec=prompt-lookup",
    "spec=self-int8",
    "spec=self-int4",
    "spec=hybrid",
    "fast",
]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_preserving_configs_match_plain_greedy_on_the_default_model(default_lm, prompt):
    ref = generate(default_lm, prompt, GREEDY)
    for text in PRESERVING:
        cfg = parse_config(text, device="cpu")
        res = generate_accelerated(default_lm, prompt, GREEDY, cfg, prefix_cache=PrefixCache())
        assert res.token_ids == ref.token_ids, text


def test_int8_keeps_the_answer_and_stays_within_a_hundredth_of_a_nat(default_lm):
    from llmlab.accel import variant
    from llmlab.measure.quality import compare_logprobs, continuation_logprobs, default_text

    ref = generate(default_lm, PROMPTS[0], GREEDY)
    res = generate_accelerated(default_lm, PROMPTS[0], GREEDY, "quant=int8", measure_kl=True)
    assert res.text == ref.text  # "The capital of France is Paris."
    assert res.stats.extra["kl_to_base_nats"] <= 0.01
    # int8 decoder weights, float16 down-projections and head, the fp32 embedding kept.
    assert res.stats.extra["weight_mb"] < 0.65 * res.stats.extra["weight_mb_before"]
    # Teacher-forced KL to fp32 on the shipped text (issue 15's goal: at most 0.01 nats).
    ids = default_lm.tokenizer(default_text(), return_tensors="pt").input_ids[0, :200]
    reference = continuation_logprobs(default_lm.model, ids, 1)
    with variant(default_lm, parse_config("quant=int8")) as int8:
        agreement = compare_logprobs(reference, continuation_logprobs(int8.model, ids, 1))
    assert 0 < agreement.mean_kl <= 0.01
    assert agreement.top1_agreement >= 0.9


def test_prefix_cache_second_prompt_reuses_the_default_system_prompt(default_lm):
    # SmolLM2's template puts the same default system prompt before every prompt.
    cache = PrefixCache()
    generate_accelerated(default_lm, PROMPTS[0], GREEDY, "prefix", prefix_cache=cache)
    res = generate_accelerated(default_lm, PROMPTS[1], GREEDY, "prefix", prefix_cache=cache)
    assert res.stats.extra["prefix_reused_tokens"] >= 20
    assert res.token_ids == generate(default_lm, PROMPTS[1], GREEDY).token_ids
