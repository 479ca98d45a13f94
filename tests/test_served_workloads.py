"""Load-test workloads (issue 20): request rates with seeded arrivals, the saturation search,
exact synthetic lengths, ignore_eos, multi-turn conversations, and the counts behind every
percentile; against the fake server (tests/served_fake.py). Real vLLM: test_served_vllm.py."""

from __future__ import annotations

import random

import numpy as np
import pytest
from IPython.core.error import UsageError

from llmlab.errors import LabError
from llmlab.served import run_load_test
from llmlab.served.loadtest import LoadLevel, RequestRecord, min_samples, run_saturation_search
from llmlab.served.workload import arrival_times, parse_rates, synthetic_prompt
from llmlab.session import Lab
from tests.helpers import run_magic
from tests.served_fake import MODEL, FakeServer


@pytest.fixture
def fake():
    server = FakeServer()
    yield server
    server.stop()


def _sm(url: str):
    return Lab().load(f"openai:{url}", model=MODEL)


def test_arrivals_are_seeded_poisson_or_constant():
    a = arrival_times(4.0, 2000, "poisson", seed=7)
    assert a == arrival_times(4.0, 2000, "poisson", seed=7) != arrival_times(4.0, 2000, seed=8)
    gaps = [b - x for x, b in zip(a, a[1:])]
    mean = sum(gaps) / len(gaps)
    assert 0.22 < mean < 0.28  # exponential gaps of mean 1/rate
    assert sum(g > 2 * mean for g in gaps) > 0.08 * len(gaps)  # a tail, unlike equal gaps
    assert arrival_times(4.0, 3, "constant") == [0.25, 0.5, 0.75]
    with pytest.raises(LabError, match="--arrivals must be one of poisson, constant"):
        arrival_times(1.0, 2, "bursty")


def test_arrivals_are_the_schedule_vllm_bench_serve_draws():
    # vllm bench serve (0.32): np.random.seed(seed), one np.random.gamma(1, 1/rate) gap per
    # request, cumulative, rescaled so the last request leaves at count / rate.
    np.random.seed(5)
    gaps = [np.random.gamma(shape=1.0, scale=1 / 2.0) for _ in range(16)]
    delays = np.cumsum(gaps)
    expected = delays * (16 / 2.0) / delays[-1]
    assert np.allclose(arrival_times(2.0, 16, "poisson", seed=5), expected, rtol=0, atol=1e-12)
    assert arrival_times(2.0, 16, seed=5)[-1] == pytest.approx(8.0)  # the rate, whatever seed
    assert arrival_times(2.0, 0) == []


def test_zero_or_absurd_rates_and_lengths_are_one_line(fake):
    sm = _sm(fake.url)
    for rates in ("0", "-1", "1e9", "nan", "fast"):
        with pytest.raises(LabError, match="rate") as err:
            run_load_test(sm, rates=rates)
        assert "\n" not in str(err.value)
    assert parse_rates("0.5, 2") == [0.5, 2.0]
    for options, message in [
        ({"input_len": 0}, "--input-len must be 1..1,000,000 tokens, got 0"),
        ({"input_len": 10**9}, "--input-len must be 1..1,000,000"),
        ({"output_len": 0}, "--output-len must be 1..100,000 tokens, got 0"),
        ({"max_tokens": 10**7}, "--max-tokens must be 1..100,000"),
        ({"turns": 0}, "--turns must be 1..64"),
        ({"requests": 0}, "--requests must be 1..100000"),
        ({"max_concurrency": 0}, "--max-concurrency must be 1..256"),
    ]:
        with pytest.raises(LabError, match=message):
            run_load_test(sm, "1", **options)
    with pytest.raises(LabError, match="needs SLOs"):
        run_saturation_search(sm, "")
    with pytest.raises(LabError, match="start rate 8 is above the highest 2"):
        run_saturation_search(sm, "ttft=1s", start_rate=8, max_rate=2)
    assert fake.requests == []  # nothing was sent for bad input


def test_synthetic_prompts_are_exact_in_the_served_tokenizer(fake):
    sm = _sm(fake.url)
    test = run_load_test(sm, "2", requests=4, input_len=40, output_len=12, ignore_eos=True)
    assert test.status == "done" and not test.warnings
    sent = [b for b in fake.requests if "prompt" in b]
    assert sent and all(len(b["prompt"].split()) == 39 for b in sent)  # + the server's BOS
    assert all(b["ignore_eos"] and b["max_tokens"] == 12 for b in sent)
    assert len({b["prompt"] for b in sent[1:]}) == 4  # distinct prompts, no accidental caching
    row = test.to_pandas().iloc[0]
    assert row["input_tokens"] == "40" and row["output_tokens"] == "12"  # the server's counts
    assert "synthetic prompts of 40 tokens" in test.to_text()


def test_a_server_without_tokenize_needs_a_tokenizer_folder(tmp_path):
    server = FakeServer(mode="notokenize")
    try:
        with pytest.raises(LabError, match="give --tokenizer FOLDER"):
            run_load_test(_sm(server.url), "1", input_len=16)
    finally:
        server.stop()


def test_ignore_eos_ignored_by_the_server_is_named(fake, monkeypatch):
    sm = _sm(fake.url)
    from llmlab.served import loadtest

    # The fake honours ignore_eos; sent without it, it answers shorter, as a server that drops it:
    monkeypatch.setattr(
        loadtest._LoadJob,
        "send",
        _dropping_ignore_eos(loadtest._LoadJob.send),
    )
    test = run_load_test(sm, "1", requests=2, output_len=12, ignore_eos=True)
    assert any("ignores ignore_eos" in w for w in test.warnings)


def _dropping_ignore_eos(send):
    def wrapper(self, prompt, level_start):
        self.workload.ignore_eos = False  # the request goes out without it...
        try:
            return send(self, prompt, level_start)
        finally:
            self.workload.ignore_eos = True  # ...while the test still asks for it

    return wrapper


def test_rate_levels_send_on_schedule_and_index_by_rate(fake):
    sm = _sm(fake.url)
    test = run_load_test(sm, rates="20,40", requests=8, max_tokens=2, seed=3, slo="ttft=5s")
    frame = test.to_pandas()
    assert test.status == "done" and list(frame.index) == [20.0, 40.0]
    level = test.level(20.0)
    sent = sorted(r.sent_s for r in level.records)
    planned = arrival_times(20.0, 8, "poisson", seed=3)
    assert all(abs(s - p) < 0.25 for s, p in zip(sent, planned))  # open loop: on schedule
    assert all(s >= p for s, p in zip(sent, planned))  # handed over early, never sent early
    assert "poisson arrivals (seed 3)" in test.to_html() and "rate req/s" in test.to_html()


def test_multi_turn_conversations_carry_earlier_turns(fake):
    sm = _sm(fake.url)
    test = run_load_test(
        sm, "2", requests=6, turns=3, input_len=8, prefix_len=20, max_tokens=2, warmup=False
    )
    assert test.status == "done"
    chats = [b["messages"] for b in fake.requests if "messages" in b]
    assert len(chats) == 6 and sorted(len(m) for m in chats) == [2, 2, 4, 4, 6, 6]
    prefixes = {m[0]["content"] for m in chats}
    assert len(prefixes) == 1 and len(next(iter(prefixes)).split()) == 20  # one shared prefix
    third = next(m for m in chats if len(m) == 6)
    assert third[2] == {"role": "assistant", "content": "The capital"}  # the earlier answer
    row = test.to_pandas().iloc[0]
    assert row["ttft_turn1_p50_ms"] is not None and row["ttft_later_p50_ms"] is not None


def test_saturation_search_finds_the_highest_rate_meeting_the_slo():
    server = FakeServer(mode="serial", token_s=0.05)  # one at a time: ~0.1 s per request
    try:
        sm = _sm(server.url)
        test = run_saturation_search(
            sm, "ttft=400ms", start_rate=2, max_rate=64, requests=12, max_tokens=2, refine=1
        )
        assert test.status == "done" and test.search
        passed = [lv.rate for lv in test.levels if lv.slo_attainment >= 0.9]
        failed = [lv.rate for lv in test.levels if lv.slo_attainment < 0.9]
        assert failed, "a one-at-a-time server must fail the SLO at some rate up to 64 req/s"
        assert test.saturation == max(passed) and test.saturation < min(failed)
        assert f"{test.saturation:.3g} req/s" in test.saturation_note
        assert "saturation:" in test.to_text() and "Saturation:" in test.to_html()
    finally:
        server.stop()


def test_ctrl_c_during_a_saturation_search_keeps_the_finished_levels(fake):
    def interrupt(test, event):
        if event == "progress" and len(test.levels) == 1:
            raise KeyboardInterrupt

    test = run_saturation_search(
        _sm(fake.url), "ttft=5s", start_rate=20, requests=4, max_tokens=2, listeners=[interrupt]
    )
    assert test.status == "stopped" and len(test.levels) == 1
    assert test.saturation == 20 and "stopped early" in test.saturation_note


def test_percentiles_need_their_samples_and_carry_counts():
    assert [min_samples(q) for q in (50, 90, 99)] == [2, 10, 100]
    rng = random.Random(0)
    records = [
        RequestRecord(ok=True, ttft_s=rng.random(), e2e_s=2.0, itl_s=[0.01] * 9, output_tokens=10)
        for _ in range(12)
    ]
    row = LoadLevel(1, records, 5.0).row()
    assert row["ttft_n"] == 12 and row["itl_n"] == 108
    assert row["ttft_p50_ms"] is not None and row["ttft_p90_ms"] is not None
    assert row["ttft_p99_ms"] is None and row["itl_p99_ms"] is not None
    assert row["itl_req_p50_ms"] == pytest.approx(10.0)  # the per-request mean gap, named apart
    from llmlab.served.render import table_html

    class _T:  # the table needs only what a LoadTest gives it
        mode, levels, warnings = "concurrency", [LoadLevel(1, records, 5.0)], []

    html = table_html(_T())  # type: ignore[arg-type]
    assert "n=12: p99 needs at least 100 samples" in html and ">n/a<" in html
    assert "ITL p50 (vLLM: all gaps)" in html and "ITL/request p50 (AIPerf, GuideLLM)" in html
    assert "* fewer than 20 samples" in html


def test_load_test_magic_rates_saturate_and_workload_flags(ip, fake, capsys):
    run_magic(ip, f"load openai:{fake.url} --model {MODEL} --name srv")
    test = run_magic(
        ip, "load-test --rates 20,40 --arrivals constant --requests 4 --max-tokens 2 --seed 1"
    )
    assert [lv.rate for lv in test.levels] == [20.0, 40.0] and test.arrivals == "constant"
    out = capsys.readouterr().out
    assert "20 req/s" in out and "ITL/req" in out
    test = run_magic(ip, "load-test --concurrency 1 --requests 2 --input-len 24 --output-len 3")
    assert test.to_pandas().iloc[0]["input_tokens"] == "24"
    test = run_magic(
        ip, "load-test --saturate --slo ttft=5s --start-rate 30 --max-rate 40 --requests 3 "
        "--max-tokens 2",
    )  # fmt: skip
    assert test.saturation == 30 and "saturation:" in capsys.readouterr().out
    for line, message in [
        ("load-test --rates 0", "rates must be above 0"),
        ("load-test --saturate", "needs SLOs"),
        ("load-test --saturate --rates 1 --slo ttft=1s", "drop --rates"),
        ("load-test --input-len 0", "--input-len must be 1.."),
    ]:
        with pytest.raises(UsageError, match=message):
            run_magic(ip, line)
    assert run_magic(ip, "generate --max-new-tokens 2 Hi").text  # still usable afterwards


def test_synthetic_prompt_with_a_real_tokenizer(tiny_llama):
    from llmlab.served.workload import LocalTokenizer

    tok = LocalTokenizer.__new__(LocalTokenizer)
    tok.tok, tok.special_tokens, tok.source = tiny_llama.tokenizer, 0, "tiny"
    rng = random.Random(1)
    for length in (1, 7, 64, 300):
        text = synthetic_prompt(tok, length, rng)
        assert len(tok.encode(text)) == length


def test_moe_on_a_served_model_says_what_the_server_returned_and_what_would(ip, fake):
    run_magic(ip, f"load openai:{fake.url} --model {MODEL} --name srv")
    with pytest.raises(UsageError) as err:
        run_magic(ip, "moe The cat sat")
    message = str(err.value)
    assert (
        "no routed_experts field" in message
        and "What would: a vLLM running Model Runner V2" in message
    )
    assert "\n" not in message and "--enable-return-routed-experts" in message
    routing = FakeServer(mode="routing")
    try:
        run_magic(ip, f"load openai:{routing.url} --model {MODEL} --name vl")
        with pytest.raises(UsageError, match="returned routed_experts: null"):
            run_magic(ip, "moe The cat sat")
    finally:
        routing.stop()
