"""A hostile OpenAI-compatible server (issue 22, items 1, 8, 9, 12–16, 17's --timeout): what it
sends is data, never instructions. Nothing it sends leaks the key, reaches the terminal raw,
hangs the client or is shown as measured when it is impossible; every fault is one line and the
session keeps working. The first tests take the issue's inputs; ``test_battery`` takes others of
the same classes."""

from __future__ import annotations

import json
import math
import re
import threading
import time

import pytest
from IPython.core.error import UsageError

from llmlab.errors import LabError
from llmlab.session import Lab
from tests.helpers import run_magic
from tests.served_fake import KEY, MODEL, FakeServer

ANSI = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # anything a terminal would act on


def _lab(url: str, **options) -> Lab:
    lab = Lab()
    lab.load(f"openai:{url}", model=MODEL, **options)
    return lab


def _within(seconds: float, fn, *args, **kwargs):
    """``fn(*args)``, failing (not hanging) if it takes longer than ``seconds``."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            box["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    start = time.perf_counter()
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"], time.perf_counter() - start


def _chunk(content=None, **choice) -> str:
    body = {"index": 0, "delta": {"content": content}} | choice
    return json.dumps({"choices": [body]})


@pytest.fixture
def server():
    servers: list[FakeServer] = []

    def make(*args, **kwargs) -> FakeServer:
        servers.append(FakeServer(*args, **kwargs))
        return servers[-1]

    yield make
    for s in servers:
        s.stop()


# -- 1: the API key never appears --------------------------------------------------------------
@pytest.mark.parametrize(
    "bad", ["sk-abc\ndef-123", "sk-abc def-123", "sk-abcé-123", "sk-\x1b[2J-123", ""]
)
def test_an_unusable_key_is_refused_without_echoing_it(server, monkeypatch, bad):
    fake = server()
    monkeypatch.setenv("LLMLAB_TEST_KEY", bad)
    with pytest.raises(LabError) as info:
        _lab(fake.url, api_key_env="LLMLAB_TEST_KEY")
    message = str(info.value)
    assert "LLMLAB_TEST_KEY" in message and "\n" not in message
    assert "abc" not in message and "123" not in message


def test_a_key_unset_after_loading_is_named_not_echoed(server, monkeypatch):
    fake = server(mode="auth")
    monkeypatch.setenv("LLMLAB_TEST_KEY", KEY)
    lab = _lab(fake.url, api_key_env="LLMLAB_TEST_KEY")
    monkeypatch.setenv("LLMLAB_TEST_KEY", "sk-now\nbroken-99")
    with pytest.raises(LabError) as info:
        lab.generate("q")
    assert str(info.value).startswith("the environment variable LLMLAB_TEST_KEY (--api-key-env)")
    assert "broken-99" not in str(info.value)


def test_a_key_file_newline_is_not_part_of_the_key(server, monkeypatch):
    fake = server(mode="auth")
    monkeypatch.setenv("LLMLAB_TEST_KEY", KEY + "\n")
    assert _lab(fake.url, api_key_env="LLMLAB_TEST_KEY").generate("q").text.endswith("Paris.")


def test_a_server_echoing_the_key_never_gets_it_shown(ip, server, monkeypatch, capsys):
    """The key comes back in the model list, an error body and the answer: redacted in all of
    them, in the printed output, the result, its HTML, and %tb (plain and verbose)."""
    fake = server(mode="echo")
    monkeypatch.setenv("LLMLAB_TEST_KEY", KEY)
    run_magic(ip, f"load openai:{fake.url} --model {MODEL} --api-key-env LLMLAB_TEST_KEY")
    with pytest.raises(UsageError) as info:  # lists two models: the message lists both
        run_magic(ip, f"load openai:{fake.url} --api-key-env LLMLAB_TEST_KEY --name x")
    seen = [str(info.value)]
    result = run_magic(ip, "generate --max-new-tokens 4 Hello")
    seen += [result.text, result.to_html(), result.to_text(), json.dumps(result.to_dict())]
    assert "[redacted]" in result.text
    for line in ("next Hello", "generate --max-new-tokens 1 Hello"):  # a 400 naming the key
        cell = ip.run_cell(f"%llm {line}")
        assert not cell.success
        seen.append(str(cell.error_in_exec))
        for mode in ("Context", "Verbose"):
            ip.run_line_magic("xmode", mode)
            ip.run_cell("%tb")
    ip.run_line_magic("xmode", "Context")
    out = capsys.readouterr()
    seen += [out.out, out.err]
    assert "bad header Bearer [redacted]" in "".join(seen)
    assert all(KEY not in text for text in seen)
    assert all("do-not-print" not in text for text in seen)


def test_a_key_spread_over_streamed_pieces_is_redacted_live_and_after(server, monkeypatch):
    pieces = ["Your key: sk-te", "st-do-not", "-print-4242", " ok"]
    fake = server(chunks=[_chunk(p) for p in pieces])
    monkeypatch.setenv("LLMLAB_TEST_KEY", KEY)
    lab = _lab(fake.url, api_key_env="LLMLAB_TEST_KEY")
    shown: list[str] = []
    sm = lab.model()
    r = lab.generate("q", on_token=lambda ids, t: shown.append(sm.tokenizer.decode(ids)))
    assert r.text == "Your key: [redacted] ok" and len(r.token_ids) == 4
    assert all("sk-te" not in text and "4242" not in text for text in shown)
    assert shown[-1] == r.text


def test_a_password_in_the_url_stays_off_everything_shown(server):
    fake = server()
    url = fake.url.replace("http://", "http://me:pw-secret-77@")
    lab = Lab()
    sm = lab.load(f"openai:{url}", model=MODEL)
    assert lab.generate("q").text.endswith("Paris.")
    texts = [repr(sm), sm.source, str(sm.summary()), sm.spec, sm.endpoint.base_url]
    assert all("pw-secret-77" not in t for t in texts)
    for bad in ("http://[::1/v1", "http://me:pw-secret-77@127.0.0.1:port/v1", "http://h\x1b[2J/v1"):
        with pytest.raises(LabError, match="host or port does not parse") as info:
            lab.load(f"openai:{bad}", model=MODEL)
        assert "pw-secret-77" not in str(info.value)
    with pytest.raises(LabError, match="takes no [?]query") as info:
        lab.load(f"openai:{fake.url}?api_key=tok-secret-88", model=MODEL)
    assert "tok-secret-88" not in str(info.value)


# -- 8: a server that streams forever ------------------------------------------------------------
def test_generate_stops_at_the_token_limit_it_asked_for(server):
    fake = server(mode="forever")
    lab = _lab(fake.url)
    r, took = _within(20, lab.generate, "q", max_new_tokens=4)
    assert len(r.token_ids) == 4 and r.stats.new_tokens == 4 and r.stats.stopped == "length"
    assert "streamed past the 4 tokens asked for" in r.stats.footer()


def test_an_answer_whose_stream_never_ends_is_kept(server):
    fake = server(mode="overstay")  # the answer and usage, then comments instead of [DONE]
    lab = _lab(fake.url, timeout_s=30)
    r, took = _within(20, lab.generate, "q", max_new_tokens=4)
    assert r.text == "The capital of France" and took < 15
    assert "did not end the stream" in r.stats.footer()


def test_a_load_test_request_ends_at_its_token_limit(server):
    from llmlab.served import run_load_test

    fake = server(mode="forever")
    lab = _lab(fake.url)
    test, _ = _within(30, run_load_test, lab.model(), "1,2", requests=2, max_tokens=3)
    assert test.status == "done"
    assert all(r.output_tokens == 3 for lv in test.levels for r in lv.records)
    assert any("streamed past the 3 tokens" in w for w in test.warnings)


# -- 9: slow-loris: a total deadline; Ctrl-C in a slow load test --------------------------------
@pytest.mark.parametrize("mode", ["loris", "keepalive"])
def test_a_trickle_of_bytes_does_not_keep_a_request_alive(server, mode):
    fake = server(mode=mode, drip_s=0.05)
    lab = _lab(fake.url, timeout_s=3)
    with pytest.raises(LabError, match="no complete event for 3 s") as info:
        _within(20, lab.generate, "q")
    assert "\n" not in str(info.value)


def test_every_request_has_a_total_deadline(server):
    fake = server(mode="forever", token_s=0.3)  # a valid token every 0.3 s, forever
    lab = _lab(fake.url, timeout_s=10, deadline_s=3)
    with pytest.raises(LabError, match="ran past its deadline of 3 s"):
        _within(20, lab.generate, "q", max_new_tokens=10_000)
    assert lab.generate("q", max_new_tokens=2).text == "The capital"  # the next one works


@pytest.mark.parametrize(
    "options",
    [
        {"mode": "slow", "stall_s": 40},  # silent: a worker blocks in a socket read
        {"mode": "loris", "drip_s": 0.5},  # a line takes 35 s to arrive
    ],
)
def test_ctrl_c_in_a_slow_load_test_returns_at_once(server, options):
    from llmlab.served import run_load_test

    fake = server(**options)
    lab = _lab(fake.url)
    asked: list[float] = []

    def interrupt(test, event):
        if event == "progress" and test.current.startswith("concurrency"):
            if not asked:
                asked.append(time.perf_counter())
            elif time.perf_counter() - asked[0] > 0.5:
                raise KeyboardInterrupt

    test, _ = _within(
        20, run_load_test, lab.model(), "2", requests=4, warmup=False, listeners=[interrupt]
    )
    assert test.status == "stopped"
    assert time.perf_counter() - asked[0] < 5


# -- 12, 13: names, text and errors reach the terminal inert and bounded -----------------------
def test_escape_sequences_never_reach_the_terminal(ip, server, capsys):
    evil = "\x1b]0;pwned\x07\x1b[2J"
    fake = server(models=[f"{evil}model", MODEL])
    with pytest.raises(UsageError) as info:  # two models, none named: the listing is shown
        run_magic(ip, f"load openai:{fake.url}")
    assert not ANSI.search(str(info.value)) and "model" in str(info.value)
    with pytest.raises(UsageError, match="control characters"):
        run_magic(ip, f"load openai:{fake.url} --model {evil}model")
    run_magic(ip, f"load openai:{fake.url} --model {MODEL}")
    fake.chunks = [_chunk(f"{evil}red\x1b[31m text\r\nnext line")]
    r = run_magic(ip, "generate Hello")
    assert r.text == "␛]0;pwned␇␛[2Jred␛[31m text\nnext line"
    fake.error = (400, json.dumps({"error": {"message": f"{evil}bad\nrequest"}}))
    with pytest.raises(UsageError) as info:
        run_magic(ip, "generate Hello")
    assert "bad request" in str(info.value) and not ANSI.search(str(info.value))
    out = capsys.readouterr()
    assert not ANSI.search(out.out.replace("\n", "")) and "\x1b" not in out.err


def test_a_model_id_with_newlines_is_refused_in_one_line(server):
    fake = server(models=["line1\nline2\nline3\nline4\nline5"])
    with pytest.raises(LabError, match="control characters") as info:
        Lab().load(f"openai:{fake.url}")
    assert "\n" not in str(info.value)


def test_ten_thousand_models_make_a_short_error_line(server):
    fake = server(models=[f"org/model-{i:05d}" for i in range(10_000)])
    for model in (None, "nope"):
        with pytest.raises(LabError) as info:
            Lab().load(f"openai:{fake.url}", model=model)
        assert len(str(info.value)) < 1_000 and "and 9,990 more" in str(info.value)
    assert Lab().load(f"openai:{fake.url}", model="org/model-09999").name == "model-09999"


# -- 14: impossible usage counts are refused, not shown as measured ----------------------------
@pytest.mark.parametrize(
    ("usage", "why"),
    [
        ({"prompt_tokens": 9, "completion_tokens": -100}, "negative"),
        ({"prompt_tokens": 10**30, "completion_tokens": 7}, "more than a"),
        ({"prompt_tokens": 9, "completion_tokens": 10**6}, "more than the 16 asked for"),
    ],
)
def test_impossible_usage_counts_are_refused(server, usage, why):
    from llmlab.served import run_load_test

    fake = server(usage=usage)
    lab = _lab(fake.url)
    r = lab.generate("q", max_new_tokens=16)
    assert r.stats.new_tokens == 7 and r.stats.prompt_tokens == 0
    assert "usage report refused" in r.stats.footer() and why in r.stats.footer()
    test = run_load_test(lab.model(), "1", requests=2, max_tokens=16)
    row = test.to_pandas().iloc[0]
    assert row["output_tok_s"] > 0
    assert abs(row["output_tok_s"] - 14 / test.levels[0].duration_s) < 1e-6
    assert any("usage report refused" in w for w in test.warnings)


# -- 15: NaN / Infinity log-probabilities, a lone surrogate ------------------------------------
def _lp_chunk(token: str, logprob, top) -> str:
    entry = {
        "token": token,
        "logprob": logprob,
        "top_logprobs": [{"token": t, "logprob": v} for t, v in top.items()],
    }
    body = {"index": 0, "delta": {"content": token}, "logprobs": {"content": [entry]}}
    return json.dumps({"choices": [body]})  # json writes NaN / Infinity as Python's json does


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_or_infinite_log_probabilities_are_one_line(ip, server, bad):
    fake = server(chunks=[_lp_chunk("Paris", -0.1, {"Paris": -0.1, "Lyon": bad})])
    run_magic(ip, f"load openai:{fake.url} --model {MODEL}")
    with pytest.raises(UsageError, match=r"top_logprobs\[1\]\.logprob is (nan|inf)") as info:
        run_magic(ip, "next The capital of France is")
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)


def test_minus_infinity_is_probability_zero_and_the_view_state_serialises(server):
    from llmlab.widgets.next_token import NextTokenView

    top = {"Paris": -0.1, "Lyon": -3.0, "Nice": -math.inf}
    fake = server(chunks=[_lp_chunk("Paris", -0.1, top)])
    dist = _lab(fake.url).next_token("The capital of France is")
    assert dist.tokens == ["Paris", "Lyon"]
    json.dumps(NextTokenView.initial_state(dist), allow_nan=False)


def test_a_lone_surrogate_does_not_lose_the_answer(server, capsys, tmp_path):
    fake = server(chunks=['{"choices": [{"index": 0, "delta": {"content": "Paris \\ud800!"}}]}'])
    r = _lab(fake.url).generate("q")
    assert r.text == "Paris \ufffd!"
    print(r.to_text())
    assert "Paris" in capsys.readouterr().out
    r.to_html().encode("utf-8")  # would raise on a lone surrogate


# -- 16: malformed JSON of every shape: one line naming what is wrong --------------------------
MALFORMED = [
    ("[1, 2]", "body is a list of 2, expected an object"),
    ('"text"', "body is a string"),
    ('{"choices": "abc"}', "choices is a string"),
    ('{"choices": {"index": 0}}', "choices is an object, expected a list"),
    ('{"choices": [{"index": 0, "delta": "hi"}]}', r"choices\[0\]\.delta is a string"),
    ('{"choices": [{"index": 0, "delta": {"content": 5}}]}', "delta.content is the number 5"),
    ('{"choices": [{"index": 0, "delta": {"content": ["a"]}}]}', "delta.content is a list"),
    ('{"error": {"message": "out of memory"}}', "reported an error: out of memory"),
    (
        '{"choices": [{"index": 0, "delta": {"content": "a"}, "logprobs": [1]}]}',
        "logprobs is a list of 1, expected an object",
    ),
    (
        '{"choices": [{"index": 0, "delta": {"content": "a"}, '
        '"logprobs": {"content": [{"token": "a", "logprob": "low"}]}}]}',
        r"content\[0\]\.logprob is a string",
    ),
]


@pytest.mark.parametrize(("payload", "message"), MALFORMED)
def test_malformed_chunks_are_one_line_naming_the_field(ip, server, payload, message):
    fake = server(chunks=[payload])
    run_magic(ip, f"load openai:{fake.url} --model {MODEL}")
    with pytest.raises(UsageError, match=message) as info:
        run_magic(ip, "generate Hello")
    text = str(info.value)
    assert "\n" not in text and "TypeError" not in text and "failed:" not in text
    fake.chunks = None
    assert run_magic(ip, "generate Hello").text.endswith("Paris.")


@pytest.mark.parametrize(
    ("usage", "why"),
    [('"many"', "usage was a string"), ("NaN", "usage was nan"), ("[1, 2]", "usage was a list")],
)
def test_malformed_usage_is_flagged_and_the_answer_kept(server, usage, why):
    fake = server(chunks=[_chunk("Paris"), f'{{"choices": [], "usage": {usage}}}'])
    r = _lab(fake.url).generate("q")
    assert r.text == "Paris" and r.stats.new_tokens == 1
    assert why in r.stats.footer()


# -- 17: --timeout nan / inf --------------------------------------------------------------------
@pytest.mark.parametrize(
    "flag", ["--timeout nan", "--timeout inf", "--timeout -1", "--deadline nan"]
)
def test_absurd_timeouts_are_one_usage_error(ip, server, flag):
    fake = server()
    with pytest.raises(UsageError, match="finite number of seconds") as info:
        run_magic(ip, f"load openai:{fake.url} --model {MODEL} {flag}")
    assert "\n" not in str(info.value)


# -- a fresh battery: the same classes, other inputs ---------------------------------------------
def _chunks(*payloads: str) -> dict:
    return {"chunks": list(payloads)}


def _lp(token="a", logprob=-0.1, top=None, **extra) -> str:
    entry = {"token": token, "logprob": logprob, "top_logprobs": top or []} | extra
    body = {"index": 0, "delta": {"content": token}, "logprobs": {"content": [entry]}}
    return json.dumps({"choices": [body]})


def _completion(**logprobs) -> str:
    return json.dumps({"choices": [{"index": 0, "text": "a", "logprobs": logprobs}]})


BIG = "x" * (33 << 20)
# (server options, what to do, an error the call must raise (regex) or a check of its result)
BATTERY = [
    # secrets, hidden in other fields and encodings
    ({"error": (401, f'{{"detail": "invalid {KEY}"}}')}, "generate", "refused the request"),
    (
        {"error": (500, '{"error": {"message": "got \\u0073k-test-do-not-print-4242"}}')},
        "generate",
        r"answered 500: got \[redacted\]",
    ),
    (_chunks(_chunk("a", finish_reason="{KEY}")), "generate", lambda r: True),
    (_chunks(_lp("x", -0.1, [{"token": "{KEY}", "logprob": -1.0}])), "next", lambda d: True),
    (_chunks('{"error": {"message": "quota for {KEY}"}}'), "generate", r"quota for \[redacted\]"),
    (_chunks("not json {KEY}"), "generate", r"not JSON: 'not json \[redacted\]'"),
    ({"models_body": "{KEY}"}, "load", r"answered /models with a string \('\[redacted\]'\)"),
    # streams that would not end
    ({"mode": "forever"}, "raw", lambda r: len(r.token_ids) == 4),
    (_chunks(*[_chunk("")] * 5_000), "generate", lambda r: "chunks without text" in _footer(r)),
    (_chunks(*['{"choices": []}'] * 5_000), "generate", lambda r: r.stats.new_tokens == 0),
    (_chunks(_chunk("y" * 200_000)), "generate", lambda r: "200,000 characters" in _footer(r)),
    (
        _chunks(
            json.dumps(
                {
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"content": "ab"},
                            "logprobs": {
                                "content": [
                                    {"token": c, "logprob": -0.1, "top_logprobs": []}
                                    for c in "ab" * 25
                                ]
                            },
                        }
                    ]
                }
            )
        ),
        "raw",
        lambda r: len(r.token_ids) == 4 and "streamed past" in _footer(r),
    ),
    # slow servers
    ({"mode": "slow", "stall_s": 20}, "generate", "sent nothing for 5 s"),
    # what a terminal would act on, in other places and other forms
    (
        _chunks(_chunk("\x9b2J\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\\x07\x08\r")),
        "generate",
        lambda r: not ANSI.search(r.text),
    ),
    ({"models": ["\u202eevil", MODEL]}, "load-any", "serves"),
    ({"models": ["\u202eevil"]}, "load-any", "control characters"),
    ({"error": (400, "plain \x08\x08\x08text \x1b[1A")}, "generate", "answered 400: plain"),
    (
        _chunks(_lp("\x1b[2J", -0.1, [{"token": "\x1b[2J", "logprob": -0.1}])),
        "next",
        lambda d: d.tokens == ["␛[2J"],
    ),
    # sizes
    (
        {"models": ["m" * 300 + str(i) for i in range(50_000)]},
        "load-any",
        r"m…, m+… and 49,99\d more",
    ),
    ({"models": ["q" * 100_000]}, "load-any", "longer than 256 characters"),
    ({"models_body": {"data": [{"id": BIG}]}}, "load-any", "more than 32,768 KiB"),
    (
        _chunks("{" + '"a": ' * 10 + "1" + "}" * 10 + " " * (2 << 20)),
        "generate",
        "longer than 1,024 KiB",
    ),
    (_chunks("[" * 100_000 + "]" * 100_000), "generate", "not JSON"),
    (
        _chunks(_lp("a", -0.1, [{"token": str(i), "logprob": -9.0} for i in range(1000)])),
        "next",
        "at most 100 entries",
    ),
    # counts that cannot be
    (
        {"usage": {"prompt_tokens": 9, "completion_tokens": 7.0}},
        "generate",
        lambda r: "not a whole number" in _footer(r) and r.stats.new_tokens == 7,
    ),
    (
        {"usage": {"prompt_tokens": True, "completion_tokens": 7}},
        "generate",
        lambda r: "a boolean" in _footer(r),
    ),
    (
        {"usage": {"prompt_tokens": 9, "completion_tokens": 10**400}},
        "generate",
        lambda r: "more than the 16 asked for" in _footer(r),
    ),
    (
        {"usage": {"prompt_tokens": 9, "completion_tokens": 1}},
        "generate",
        lambda r: "fewer than the 7 text chunks" in _footer(r) and r.stats.new_tokens == 7,
    ),
    (
        {"usage": {"prompt_tokens": 9, "completion_tokens": 7}},
        "generate",
        lambda r: r.stats.new_tokens == 7 and r.stats.prompt_tokens == 9,
    ),  # a true report stays
    # log-probabilities that cannot be
    (_chunks(_lp("a", 1e308)), "next", r"content\[0\]\.logprob is the number 1e\+308"),
    (_chunks(_lp("a", -math.inf)), "generate", "finite log-probability for a token it chose"),
    (
        _chunks(_lp("a", -0.01, [{"token": t, "logprob": -0.01} for t in "abc"])),
        "next",
        "add up to 2.970",
    ),
    (
        _chunks(_completion(tokens=["a", "b"], token_logprobs=[-0.1])),
        "raw",
        r"token_logprobs is a list of 1, expected a list as long",
    ),
    (_chunks(_lp("a", -0.1, [0.5, 0.2])), "next", r"top_logprobs\[0\] is the number 0.5"),
    ({"error": (500, "z" * 5_000_000)}, "generate", "answered 500: z{100,}…$"),
    ({"models_body": {"data": [{"name": "no id"}]}}, "load-any", "entry 0 whose id is null"),
    (_chunks("1e999"), "generate", "body is inf"),
    (_chunks(_chunk("a", finish_reason=5)), "generate", "finish_reason is the number 5"),
    ({"models": ["👩‍🔬 model ✓"]}, "load-any", lambda sm: sm.name == "👩‍🔬-model-✓"),
    # other malformed shapes
    (_chunks('{"choices": [null]}'), "generate", r"choices\[0\] is null, expected an object"),
    (_chunks('{"choices": [{"index": "0", "delta": {}}]}'), "generate", "index is a string"),
    (_chunks('{"choices": [{"index": 0, "text": 5}]}'), "raw", r"choices\[0\]\.text is the number"),
    (_chunks("NaN"), "generate", "body is nan"),
    (_chunks('{"object": "error", "message": "engine died"}'), "generate", "error: engine died"),
    (
        _chunks(json.dumps({"choices": [{"index": 1, "delta": {"content": "other"}}]})),
        "generate",
        lambda r: r.text == "",
    ),
]


def _footer(result) -> str:
    return result.stats.footer()


@pytest.mark.parametrize(("options", "action", "expect"), BATTERY)
def test_battery(server, monkeypatch, capsys, options, action, expect):
    fake = server(**options)
    monkeypatch.setenv("LLMLAB_TEST_KEY", KEY)
    # Limits with margins a busy machine keeps; the slow case waits them out once.
    key = {"api_key_env": "LLMLAB_TEST_KEY", "deadline_s": 25}

    def act():
        if action.startswith("load"):
            return Lab().load(f"openai:{fake.url}", timeout_s=5, **key)
        lab = Lab()
        lab.load(f"openai:{fake.url}", model=MODEL, timeout_s=5, **key)
        if action == "next":
            return lab.next_token("The capital of France is")
        return lab.generate("q", max_new_tokens=4 if action == "raw" else 16, raw=action == "raw")

    if callable(expect):
        value, _ = _within(30, act)
        assert expect(value)
        texts = [value.to_text(), value.to_html()] if hasattr(value, "to_html") else [repr(value)]
        if hasattr(value, "payload"):  # a next-token distribution: its view's state is JSON
            texts.append(json.dumps(value.payload(), allow_nan=False))
        if hasattr(value, "to_dict"):
            texts.append(json.dumps(value.to_dict(), allow_nan=False))
    else:
        with pytest.raises(LabError, match=expect) as info:
            _within(30, act)
        message = str(info.value)
        assert "\n" not in message and len(message) < 600
        assert not re.search(r"\b(Type|Value|Key|Attribute|Index|Recursion)Error\b", message)
        texts = [message]
    out = capsys.readouterr()
    for text in [*texts, out.out, out.err]:
        assert KEY not in text and "do-not-print" not in text
        assert not ANSI.search(text.replace("\n", "").replace("\t", ""))


@pytest.mark.slow
def test_an_executed_notebook_and_its_report_never_hold_the_key(server, monkeypatch, tmp_path):
    """Issue 22 item 1 as it was found: `python -m llmlab.report --execute` saved what a server
    echoing the key sent back into the executed notebook and its HTML report."""
    import nbformat

    from llmlab.report import main

    fake = server(mode="echo")
    monkeypatch.setenv("LLMLAB_TEST_KEY", KEY)
    lines = [
        "%llm generate --max-new-tokens 1 Hello",  # the server answers 400 naming the key
        f"%llm load openai:{fake.url} --api-key-env LLMLAB_TEST_KEY --name x",  # lists it
    ]
    cells = [
        "%load_ext llmlab",
        f"%llm load openai:{fake.url} --model {MODEL} --api-key-env LLMLAB_TEST_KEY",
        "%llm generate --max-new-tokens 4 Hello",
        *(
            f"try:\n    get_ipython().run_line_magic('llm', {line[5:]!r})\n"
            "except Exception as err:\n    print(err)"
            for line in lines
        ),
        "%tb",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    source = tmp_path / "echo.ipynb"
    nbformat.write(nb, source)
    assert main([str(source), "--execute", "-o", str(tmp_path / "out"), "--timeout", "300"]) == 0
    written = [p.read_text() for p in (tmp_path / "out").iterdir()]
    assert len(written) == 2 and "[redacted]" in written[0] + written[1]
    assert all(KEY not in text and "do-not-print" not in text for text in written)
