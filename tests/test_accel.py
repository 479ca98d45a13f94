"""Accelerations on tiny models: the registry, greedy identity, restoring the model, bad input."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from llmlab.accel import ACCELERATIONS, AccelConfig, generate_accelerated, parse_config, variant
from llmlab.accel.prefix import PrefixCache
from llmlab.errors import LabError
from llmlab.generation.engine import generate
from llmlab.generation.settings import GenerationSettings
from tests.helpers import run_magic

GREEDY = GenerationSettings(max_new_tokens=24)
# Short, repetitive (prompt lookup matches) and longer than a draft window (10 tokens).
PROMPTS = [
    "Hi",
    "abc abc abc abc abc abc",
    "Summarise: the cat sat on the mat. The cat sat on the mat because the mat was warm. " * 3,
]
PRESERVING = [
    "kv=off",
    "kv=static",
    "prefix=on",
    "spec=prompt-lookup",
    "spec=self-int8",
    "spec=self-int4",
    "spec=hybrid",
    "attn=eager",
    "dtype=fp32",
    "fast",
]


def fingerprint(lm) -> dict:
    """Everything a toggle could leave behind on a loaded model."""
    return {
        "state": {k: v.clone() for k, v in lm.model.state_dict().items()},
        "attn": lm.attn_implementation,
        "dtype": lm.dtype,
        "attrs": set(lm.model.__dict__),
        "gen_config": lm.model.generation_config.to_dict(),
        "modules": [type(m).__name__ for m in lm.model.modules()],
    }


def assert_same_model(before: dict, lm) -> None:
    after = fingerprint(lm)
    assert after["attn"] == before["attn"] and after["dtype"] == before["dtype"]
    assert after["attrs"] == before["attrs"]
    assert after["gen_config"] == before["gen_config"]
    assert after["modules"] == before["modules"]
    assert after["state"].keys() == before["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(v, after["state"][k]), k


# -- registry and parsing ---------------------------------------------------------------------
def test_registry_describes_every_acceleration():
    assert set(ACCELERATIONS) == {"kv", "prefix", "spec", "quant", "attn", "dtype", "compile"}
    for acc in ACCELERATIONS.values():
        assert acc.default in acc.values and acc.changes and acc.needs
        assert acc.applied in ("load", "generate")
    assert ACCELERATIONS["quant"].output_preserving is False
    assert ACCELERATIONS["spec"].output_preserving is True


def test_parse_config_labels_and_claims():
    cfg = parse_config("spec=prompt-lookup,quant=int8")
    assert isinstance(cfg, AccelConfig)
    assert cfg.label == "spec=prompt-lookup,quant=int8"
    assert cfg.output_preserving is False
    assert parse_config("quant=int8,spec=prompt-lookup") == cfg  # canonical order
    assert parse_config("kv=off").output_preserving is True
    for empty in ("", "baseline", None):
        assert parse_config(empty).is_baseline and parse_config(empty).label == "baseline"
    assert parse_config("kv=dynamic").is_baseline  # defaults are no acceleration
    assert parse_config("prefix").get("prefix") == "on"
    assert parse_config("dtype=bfloat16").label == "dtype=bf16"
    assert parse_config("fast", device="cpu").output_preserving


@pytest.mark.parametrize(
    "text, message",
    [
        ("warp=9", "unknown acceleration 'warp'"),
        ("kv=sideways", "unknown value 'sideways' for kv"),
        ("kv=off,spec=prompt-lookup", "spec needs a KV cache"),
        ("spec=self-int8,quant=int4", "already quantized"),
        ("kv=static,prefix=on", "prefix=on"),
        ("compile=on,spec=prompt-lookup", "cannot roll back"),
        ("quant=int8,dtype=bf16", "float32 activations"),
        ("kv=off,kv=static", "given twice"),
        ("spec", "not key=value"),
        ("spec=prompt-lookup,prefix=on", "cannot be combined"),
    ],
)
def test_bad_configs_fail_in_one_line(text, message):
    with pytest.raises(LabError, match=message) as err:
        parse_config(text)
    assert "\n" not in str(err.value)


def test_cuda_only_and_missing_packages_are_refused_on_cpu(tiny_llama):
    for text, message in [
        ("attn=flash", "CUDA"),
        ("quant=bnb8", "CUDA"),
        ("dtype=fp16", "float16"),
        ("compile=on", "on CPU it compiled"),
    ]:
        with pytest.raises(LabError, match=message):
            generate_accelerated(tiny_llama, "Hi", GREEDY, text)
    ok, why = ACCELERATIONS["kv"].value_available(tiny_llama, "int4-quanto")
    assert ok or "pip install optimum-quanto" in why
    ok, why = ACCELERATIONS["attn"].value_available(tiny_llama, "flash")
    assert not ok and "CUDA" in why


def test_sampling_with_speculation_is_refused(tiny_llama):
    with pytest.raises(LabError, match="greedy"):
        generate_accelerated(
            tiny_llama, "Hi", GenerationSettings(temperature=0.7), "spec=prompt-lookup"
        )


def test_draft_with_a_different_tokenizer_is_refused(tiny_llama):
    class OtherTokenizer:
        def __len__(self):
            return len(tiny_llama.tokenizer)

        def get_vocab(self):
            return {"other": 0}

    other = dataclasses.replace(
        tiny_llama, name="other", model=object(), tokenizer=OtherTokenizer()
    )
    with pytest.raises(LabError, match="tokenizer differs"):
        generate_accelerated(tiny_llama, "Hi", GREEDY, "spec=draft:other", models={"other": other})
    with pytest.raises(LabError, match="no model named 'ghost'"):
        generate_accelerated(tiny_llama, "Hi", GREEDY, "spec=draft:ghost", models={})


# -- greedy identity and restoring the model -------------------------------------------------
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_output_preserving_configs_give_identical_greedy_tokens(family):
    from llmlab.models.registry import load_model

    lm = load_model(f"tiny:{family}")
    before = fingerprint(lm)
    for prompt in PROMPTS:
        ref = generate(lm, prompt, GREEDY, raw=True)
        for text in PRESERVING:
            cfg = parse_config(text, device="cpu")
            assert cfg.output_preserving
            res = generate_accelerated(
                lm, prompt, GREEDY, cfg, raw=True, prefix_cache=PrefixCache()
            )
            assert res.token_ids == ref.token_ids, (text, prompt)
            assert res.stats.extra["accel"] == cfg.label
    assert_same_model(before, lm)


def test_draft_model_with_same_tokenizer_keeps_greedy_output(tiny_llama):
    from llmlab.models.registry import load_model

    draft = load_model("tiny:qwen2")
    draft_config = draft.model.generation_config.to_dict()
    for prompt in PROMPTS:
        ref = generate(tiny_llama, prompt, GREEDY, raw=True)
        res = generate_accelerated(
            tiny_llama, prompt, GREEDY, "spec=draft:tiny-qwen2", raw=True,
            models={"tiny-qwen2": draft},
        )  # fmt: skip
        assert res.token_ids == ref.token_ids
        assert res.stats.extra["target_passes"] >= 1
        assert 0 <= res.stats.extra["acceptance_rate"] <= 1
    assert draft.model.generation_config.to_dict() == draft_config


def test_speculation_reports_acceptance_and_tokens_per_pass(tiny_llama):
    prompt = PROMPTS[2]
    res = generate_accelerated(tiny_llama, prompt, GREEDY, "spec=prompt-lookup", raw=True)
    extra = res.stats.extra
    assert extra["target_passes"] <= res.stats.new_tokens
    assert extra["tokens_per_target_pass"] == round(
        res.stats.new_tokens / extra["target_passes"], 2
    )
    assert 0 <= extra["acceptance_rate"] <= 1


@pytest.mark.parametrize("quant", ["int8", "int4"])
def test_quantization_runs_on_a_copy_and_reports_weight_memory(tiny_llama, quant):
    before = fingerprint(tiny_llama)
    res = generate_accelerated(tiny_llama, "Hello there", GREEDY, f"quant={quant}")
    assert res.stats.new_tokens > 0
    assert res.stats.extra["weight_mb"] < res.stats.extra["weight_mb_before"]
    with variant(tiny_llama, f"quant={quant}") as vlm:
        assert vlm.model is not tiny_llama.model
        assert vlm.tokenizer is tiny_llama.tokenizer
    assert_same_model(before, tiny_llama)


def test_variant_switches_the_attention_kernel_back(tiny_llama):
    assert tiny_llama.attn_implementation == "sdpa"
    with variant(tiny_llama, "attn=eager") as vlm:
        assert vlm.attn_implementation == "eager"
    assert tiny_llama.attn_implementation == "sdpa"
    with pytest.raises(RuntimeError), variant(tiny_llama, "attn=eager"):
        raise RuntimeError("boom")
    assert tiny_llama.attn_implementation == "sdpa"


def test_approximating_configs_run(tiny_llama):
    for text in [
        "quant=int8",
        "quant=int4",
        "dtype=bf16",
        "kv=fp8",
        "spec=prompt-lookup,quant=int8",
    ]:
        cfg = parse_config(text)
        assert not cfg.output_preserving
        res = generate_accelerated(tiny_llama, PROMPTS[1], GREEDY, cfg)
        assert res.stats.new_tokens > 0


# -- prefix cache ------------------------------------------------------------------------------
def test_prefix_cache_reuses_chat_history_and_keeps_output():
    from llmlab.session import Lab

    plain, fast = Lab(), Lab()
    plain.load("tiny:llama")
    fast.load("tiny:llama")
    for message in ["Hello", "And again?", "One more"]:
        ref = plain.chat(message, max_new_tokens=12)
        res = fast.chat(message, max_new_tokens=12, accel="prefix")
        assert res.token_ids == ref.token_ids
    # The third turn re-prefilled only what was new since the second.
    assert res.stats.extra["prefix_reused_tokens"] > 0
    assert res.stats.extra["prefix_reused_tokens"] >= res.stats.prompt_tokens - 30
    assert "ttft_saved_ms_est" in res.stats.extra
    fast.reset_chat()
    assert "tiny-llama" not in fast.prefix_caches


def test_prefix_cache_reuses_a_fixed_system_prompt():
    from llmlab.session import Lab

    lab = Lab()
    lab.load("tiny:llama")
    system = "You answer in one word. " * 4
    first = lab.generate("Colour of sky?", system=system, accel="prefix", max_new_tokens=8)
    second = lab.generate("Colour of grass?", system=system, accel="prefix", max_new_tokens=8)
    assert first.stats.extra["prefix_reused_tokens"] == 0
    assert second.stats.extra["prefix_reused_tokens"] >= len(system)  # bytes = tokens here
    ref = lab.generate("Colour of grass?", system=system, max_new_tokens=8)
    assert second.token_ids == ref.token_ids


def test_prefix_cache_is_not_reused_across_weight_variants(tiny_llama):
    cache = PrefixCache()
    generate_accelerated(tiny_llama, PROMPTS[2], GREEDY, "prefix", prefix_cache=cache)
    res = generate_accelerated(
        tiny_llama, PROMPTS[2], GREEDY, "prefix,quant=int8", prefix_cache=cache
    )
    assert res.stats.extra["prefix_reused_tokens"] == 0


# -- magics and panel --------------------------------------------------------------------------
def test_magic_accel_list_and_generate_with_accel(ip, capsys):
    listing = run_magic(ip, "accel list")
    rows = listing.to_pandas()
    assert {"kv", "spec", "quant", "compile"} <= set(rows.index)
    assert "here" in rows.columns
    html = listing.to_html()  # every cell whole: nothing cut at pandas' 50 characters
    assert all(len(v) <= 50 or v[:60] in html for v in rows["needs"].map(str))
    assert "optimum-quanto or hqq (fp8 is built in)" in html and "..." not in html
    run_magic(ip, "load tiny:llama")
    result = run_magic(ip, 'generate --raw --max-new-tokens 8 --accel kv=off "Hello"')
    assert result.stats.extra["accel"] == "kv=off"
    from llmlab.session import default_lab

    ref = default_lab().generate("Hello", raw=True, max_new_tokens=8)
    assert result.token_ids == ref.token_ids
    result = run_magic(ip, 'chat --max-new-tokens 4 --accel prefix "Hi"')
    assert result.stats.extra["accel"] == "prefix=on"


def test_magic_bad_accel_is_one_usage_error(ip):
    from IPython.core.error import UsageError

    run_magic(ip, "load tiny:llama")
    with pytest.raises(UsageError, match="unknown acceleration 'turbo'"):
        run_magic(ip, 'generate --accel turbo=on "Hello"')
    with pytest.raises(UsageError, match="greedy"):
        run_magic(ip, 'generate --temperature 0.8 --accel spec=prompt-lookup "Hello"')
    # The session keeps working.
    assert run_magic(ip, 'generate --max-new-tokens 2 "Hello"').stats.new_tokens > 0


def test_panel_state_runs_side_by_side_and_greys_out(tiny_llama):
    from llmlab.accel.panel import AccelPanelState

    state = AccelPanelState(lm=tiny_llama, models={"tiny-llama": tiny_llama}, max_new_tokens=8)
    payload = state.payload()
    values = {c["name"]: {v["value"]: v for v in c["values"]} for c in payload["controls"]}
    assert values["attn"]["flash"]["ok"] is False and "CUDA" in values["attn"]["flash"]["why"]
    assert values["spec"]["draft:NAME"]["ok"] is False  # no other model loaded
    state.run("baseline", "Hello", 8)
    state.run("kv=static", "Hello", 8)
    assert [r["label"] for r in state.runs] == ["baseline", "kv=static"]
    assert state.runs[1]["vs_baseline"]["same_tokens"] is True
    # Two more runs: the baseline stays shown, and ratios are against it, not the previous.
    state.run("kv=off", "Hello", 8)
    state.run("quant=int8", "Hello", 8)
    assert [r["title"] for r in state.runs] == ["baseline", "previous", "this run"]
    assert [r["label"] for r in state.runs] == ["baseline", "kv=off", "quant=int8"]
    base = state.runs[0]["decode_tok_s"]
    ratio = state.runs[2]["vs_baseline"]["decode_ratio"]
    assert ratio == pytest.approx(state.runs[2]["decode_tok_s"] / base, abs=0.01)
    # The exported copy marks the selected configuration.
    assert "selected: <code>quant=int8</code>" in state.to_html() and "int8 ✓" in state.to_html()
    state.run("kv=off", "Another prompt", 4)
    assert "another prompt" in state.runs[-1]["vs_baseline"]["note"]
    assert state.describe("kv=off,spec=prompt-lookup")["error"]
    html = state.to_html()
    assert "kv=off" in html and "flash" in html
    state.run("baseline", "</script><b>x</b>", 4)
    assert "</script><b>" not in state.to_html()


def test_panel_widget_runs_on_message(tiny_llama):
    from llmlab.widgets.accel import AccelPanel

    from llmlab.accel.panel import AccelPanelState

    panel = AccelPanel(AccelPanelState(lm=tiny_llama, models={}, max_new_tokens=6))
    panel._on_message(panel, {"type": "check", "config": "quant=int8"}, None)
    assert panel.status["label"] == "quant=int8" and panel.status["preserving"] is False
    panel._on_message(
        panel,
        {"type": "run", "config": "spec=prompt-lookup", "prompt": "Hi", "max_new_tokens": 6},
        None,
    )
    assert panel.runs[-1]["label"] == "spec=prompt-lookup" and not panel.status["busy"]
    panel._on_message(
        panel, {"type": "run", "config": "kv=off,spec=prompt-lookup", "prompt": "Hi"}, None
    )
    assert "spec needs a KV cache" in panel.status["error"]


def test_prompt_lookup_drafts_only_on_a_two_token_match():
    from types import SimpleNamespace

    from llmlab.accel.lookup import strict_get_candidates

    gen = SimpleNamespace(
        max_length=100, max_matching_ngram_size=3, num_output_tokens=3, eos_token_id=None
    )
    no_repeat = torch.tensor([[5, 6, 7, 5, 8]])  # only a 1-gram (5) repeats: no draft
    assert strict_get_candidates(gen, no_repeat)[0] is no_repeat
    repeat = torch.tensor([[1, 2, 3, 4, 9, 1, 2]])  # "1 2" seen before: draft what followed
    assert strict_get_candidates(gen, repeat)[0].tolist() == [[1, 2, 3, 4, 9, 1, 2, 3, 4, 9]]
    gen.eos_token_id = torch.tensor([4])  # a draft stops before end-of-sequence
    assert strict_get_candidates(gen, repeat)[0].tolist() == [[1, 2, 3, 4, 9, 1, 2, 3]]


def test_bare_values_name_their_one_setting():
    from llmlab.accel import parse_config

    assert parse_config("int8").label == "quant=int8"
    assert parse_config("bfloat16").label == "dtype=bf16"
    assert (
        parse_config("prompt-lookup,eager").label
        == parse_config("spec=prompt-lookup,attn=eager").label
    )


def test_panel_refreshes_its_saved_copy_after_a_run(tiny_llama, monkeypatch):
    from llmlab.widgets.accel import AccelPanel

    from llmlab.accel.panel import AccelPanelState

    class Handle:
        updates: list = []

        def update(self, obj, metadata=None, raw=False):
            assert raw and isinstance(obj, dict)
            self.updates.append(obj)

    monkeypatch.setenv("LLMLAB_OFFLINE_COPY", "now")  # build the copy at once, as reports do
    panel = AccelPanel(AccelPanelState(lm=tiny_llama, models={}, max_new_tokens=4))
    panel._copy_handle = Handle()  # the offline copy's own output (beside the live view)
    panel.run("baseline", "Hi", 4)
    panel.run("kv=static", "Hi", 4)
    assert panel.payload["config"] == "kv=static"  # a re-render shows the selection
    saved = panel._copy_handle.updates[-1]["text/html"]
    assert "kv=static" in saved and "vs_baseline" in saved  # runs travel in the saved copy


def test_panel_warms_up_each_configuration_once_untimed():
    from llmlab.accel.panel import AccelPanelState
    from llmlab.measure.latency import WARMUP_TOKENS
    from llmlab.models.registry import load_model

    lm = load_model("tiny:llama")  # a fresh copy: nothing has run on it in this session
    lengths: list[int] = []  # input length of every forward pass of the loaded model

    def count(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        lengths.append(ids.shape[1])

    hook = lm.model.register_forward_pre_hook(count, with_kwargs=True)
    state = AccelPanelState(lm=lm, models={}, max_new_tokens=12)
    try:
        first = state.run("baseline", "Hello there", 12)
        first_passes = list(lengths)
        lengths.clear()
        second = state.run("baseline", "Hello there", 12)
    finally:
        hook.remove()
    prompt = first["prompt_tokens"]
    # The first run: a short untimed generation (its own prefill), then the timed one.
    prefills = [i for i, n in enumerate(first_passes) if n == prompt]
    assert len(prefills) == 2 and prefills[0] == 0
    assert 1 <= prefills[1] <= WARMUP_TOKENS
    assert len(first_passes) - prefills[1] == first["new_tokens"]
    assert "warmup_s" in first["extra"] and "warmed up once" in first["warmup"]
    # The second run of the same configuration: only the timed generation.
    assert lengths[0] == prompt and len(lengths) == second["new_tokens"]
    assert "warmup_s" not in second["extra"] and "already warm" in second["warmup"]
    assert "not timed" in state.to_html()
    # A configuration that builds a copy: build time reported apart, once, then warm.
    built = state.run("quant=int8", "Hello there", 12)
    assert built["extra"]["build_s"] > 0 and "warmup_s" in built["extra"]
    again = state.run("quant=int8", "Hello there", 12)
    assert "build_s" not in again["extra"] and "already warm" in again["warmup"]


def test_the_panel_headline_is_the_end_to_end_speedup():
    """Issue 21: spec=hybrid read "5.20× baseline" (decode) while end to end it was 1.4×."""
    from llmlab.accel.panel import _run_footer, compare_to_baseline

    def record(total_s, ttft_ms, decode):
        return {
            "prompt": "p",
            "token_ids": list(range(15)),
            "new_tokens": 15,
            "total_s": total_s,
            "ttft_ms": ttft_ms,
            "decode_tok_s": decode,
        }

    baseline, hybrid = record(3.92, 1066, 4.9), record(2.79, 2236, 25.5)
    compare_to_baseline(hybrid, baseline)
    vs = hybrid["vs_baseline"]
    assert vs["e2e_speedup"] == 1.41 and vs["decode_ratio"] == 5.20 and vs["ttft_speedup"] == 0.48
    assert vs["headline"] == "1.41× baseline end to end · decode 5.20× · TTFT 0.48×"
    assert _run_footer(hybrid).startswith("1.41× baseline end to end")
    # Answers of different lengths: end to end per output token, and said so.
    short = {**record(1.0, 500, 20.0), "new_tokens": 5, "token_ids": list(range(5))}
    compare_to_baseline(short, baseline)
    assert short["vs_baseline"]["e2e_speedup"] == round((3.92 / 15) / (1.0 / 5), 2)
    assert "per output token" in short["vs_baseline"]["headline"]


def test_no_negative_durations_when_a_copy_was_built_earlier(monkeypatch):
    """A copy built before a panel run (by a lens comparison, a sweep) is not this run's: its
    build seconds were subtracted from the warm-up, which read "warm-up s -0.06"."""
    import time

    import llmlab.accel.quant as quant
    from llmlab.accel.panel import AccelPanelState
    from llmlab.accel.registry import parse_config
    from llmlab.accel.variant import changed_copy
    from llmlab.models.registry import load_model

    tiny_llama = load_model("tiny:llama")  # its own: nothing warmed up or built for it yet
    real = quant.quantize

    def slow_quantize(*args, **kwargs):
        time.sleep(1.5)  # a build slower than the warm-up run that follows
        return real(*args, **kwargs)

    monkeypatch.setattr(quant, "quantize", slow_quantize)
    changed_copy(tiny_llama, parse_config("quant=int8"))  # built for something else
    monkeypatch.setattr(quant, "quantize", real)
    state = AccelPanelState(lm=tiny_llama, models={"tiny-llama": tiny_llama}, max_new_tokens=6)
    state.run("baseline", "Hello there", 6)
    run = state.run("quant=int8", "Hello there", 6)
    assert "build_s" not in run["extra"]  # not built by this run
    durations = {"total_s": run["total_s"], "ttft_ms": run["ttft_ms"]}
    durations |= {k: v for k, v in run["extra"].items() if k.endswith(("_s", "_ms", "_ms_est"))}
    assert durations and all(v >= 0 for v in durations.values()), durations
    html = state.to_html()
    assert "-0." not in html and "warm-up s (not timed)" in html


def test_panel_figures_are_in_words_not_raw_keys(tiny_llama):
    from llmlab.accel.panel import AccelPanelState

    state = AccelPanelState(lm=tiny_llama, models={"tiny-llama": tiny_llama}, max_new_tokens=8)
    prompt = "one two three one two three one two three"
    state.run("baseline", prompt, 8)
    state.run("quant=int8", prompt, 8)
    state.run("spec=prompt-lookup", prompt, 8)
    html = state.to_html()
    for raw in ("kl_to_base_nats", "top1_to_base", "acceptance_rate", "weight_mb"):
        assert raw not in html
    assert "KL to loaded weights" in html and "acceptance rate" in html
    shown = dict(state.runs[-1]["extra_shown"])
    assert shown["acceptance rate"].endswith("%")  # "1.0" read as a share: 100%
    # The KL is a mean over the answer's tokens: shown with its interval and n.
    int8 = state.runs[-2]["extra"]
    lo, hi = int8["kl_to_base_ci95"]
    assert lo <= int8["kl_to_base_nats"] <= hi and int8["kl_positions"] == 8
    assert "95% CI of that mean KL" in html
