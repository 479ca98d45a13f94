"""The %llm front door: parsing, help, interpolation, and one-line errors."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from llmlab.generation.result import GenerationResult
from tests.helpers import run_magic


@pytest.fixture
def tiny(ip):
    run_magic(ip, "load tiny:llama")
    return ip


def test_generate_returns_an_assignable_result(tiny, capsys):
    r = run_magic(tiny, "generate --max-new-tokens 5 hello there")
    assert isinstance(r, GenerationResult) and r.prompt == "hello there"
    assert r.stats.new_tokens <= 5
    out = capsys.readouterr().out
    assert "5 new" in out or "new ·" in out  # the stats footer was printed


def test_a_result_drawn_by_its_cell_is_not_echoed_there(tiny, capsys):
    from IPython.utils.capture import capture_output

    with capture_output() as shown:
        tiny.run_cell('%llm generate --max-new-tokens 3 "hi"', store_history=True)
    echo = [o for o in shown.outputs if "GenerationResult" in str(o.data)]
    assert not echo  # no second Out[n] under the streamed answer
    r = tiny.user_ns["_"]  # still reachable
    assert isinstance(r, GenerationResult)
    with capture_output() as shown:
        tiny.run_cell("_", store_history=True)  # a later cell asks for it: shown in full
    assert shown.outputs and "3 new" in str(shown.outputs[0].data)


def test_sampling_flags_reach_the_engine(tiny):
    r = run_magic(
        tiny, "generate --max-new-tokens 4 --temperature 0.8 --top-k 5 --top-p 0.9 --seed 1 hi"
    )
    assert (r.settings.temperature, r.settings.top_k, r.settings.top_p) == (0.8, 5, 0.9)
    r = run_magic(tiny, "generate --max-new-tokens 3 --temperature 1 --best-of 3 hi")
    assert len(r.candidates) == 3


def test_line_interpolates_variables_and_body_stays_literal(tiny):
    tiny.user_ns["topic"] = "dragons"
    tiny.run_cell(
        'r = get_ipython().run_line_magic("llm", "generate --max-new-tokens 2 About {topic}")'
    )
    assert tiny.user_ns["r"].prompt == "About dragons"
    r = run_magic(tiny, "generate --max-new-tokens 2", "def f(): return {'a': {topic}}\n")
    assert r.prompt == "def f(): return {'a': {topic}}"
    r = run_magic(tiny, "generate --max-new-tokens 2 --format-body", "About {topic}")
    assert r.prompt == "About dragons"


def test_chat_cell_keeps_history_and_resets(tiny, capsys):
    run_magic(tiny, "chat --max-new-tokens 3", "My name is Ada.")
    run_magic(tiny, "chat --max-new-tokens 3", "What is my name?")
    from llmlab.session import default_lab

    assert len(default_lab().histories["tiny-llama"]) == 4
    run_magic(tiny, "chat --reset")
    assert default_lab().histories["tiny-llama"] == []


def test_models_use_unload(tiny, capsys):
    run_magic(tiny, "load tiny:qwen2 --name q")
    table = run_magic(tiny, "models")
    assert list(table.index) == ["tiny-llama", "q"] and table.loc["q", "active"] == "●"
    run_magic(tiny, "use tiny-llama")
    run_magic(tiny, "unload q")
    assert "unloaded q" in capsys.readouterr().out


def test_next_returns_the_distribution(tiny):
    d = run_magic(tiny, 'next --top-k 3 "hello"')
    assert d.top_k == 3 and len(d.tokens) > 3


@pytest.mark.parametrize(
    "line, message",
    [
        ("frobnicate", "unknown subcommand 'frobnicate'"),
        ("genrate hi", "did you mean 'generate'"),
        ("generate --bogus 1 hi", "unrecognized arguments: --bogus"),
        ("generate --max-new-tokens 0 hi", "positive"),
        ("generate --max-new-tokens -3 hi", "positive"),
        ("generate --temperature -1 hi", "temperature must be >= 0"),
        ("generate --top-p 1.5 hi", "top-p must be in"),
        ('generate ""', "empty"),
        ("generate 'unbalanced", "quote the text"),
        ("load /no/such/path", "unknown model"),
        ("load tiny:llama --dtype float16", "float16 is not supported on CPU"),
        ("use nobody", "no model named 'nobody'"),
        ("help nothing", "no subcommand 'nothing'"),
    ],
)
def test_mistakes_are_one_line_and_the_session_keeps_working(tiny, line, message):
    with pytest.raises(UsageError, match=message) as err:
        run_magic(tiny, line)
    assert "\n" not in str(err.value)
    assert run_magic(tiny, "generate --max-new-tokens 2 still works").stats.new_tokens >= 1


def test_too_long_prompt_is_one_line(tiny):
    with pytest.raises(UsageError, match="context is 2048"):
        run_magic(tiny, "generate --raw " + "x" * 2100)


def test_cell_body_refused_where_meaningless(tiny):
    with pytest.raises(UsageError, match="takes no cell body"):
        run_magic(tiny, "models", "text")


def test_help_lists_every_subcommand(ip, capsys):
    from llmlab.magics.core import LlmMagics
    from llmlab.magics.registry import COMMANDS

    doc = LlmMagics.llm.__doc__
    for name in COMMANDS:
        assert f"usage: %llm {name}" in doc
    run_magic(ip, "help generate")
    out = capsys.readouterr().out
    assert "--temperature" in out and "--best-of" in out
    run_magic(ip, "generate --help")
    assert "--top-p" in capsys.readouterr().out


@pytest.mark.slow
def test_generate_before_any_load_loads_the_default(ip):
    r = run_magic(ip, 'generate "What is the capital of France?"')
    assert r.model == "smollm2" and "Paris" in r.text


def test_loops_to_the_token_limit_get_one_note():
    from llmlab.magics.streaming import repeating_period

    assert repeating_period([5, 6, 7] * 8) == 3
    assert repeating_period([9, 9, 9]) is None  # too short to call a loop
    assert repeating_period(list(range(40))) is None


def test_a_refused_request_leaves_no_generating_card(tiny):
    from IPython.utils.capture import capture_output
    from llmlab.magics.streaming import _stream_to_display

    from llmlab.errors import LabError

    def refuse(on_token):
        raise LabError("no")

    html = tiny.display_formatter.formatters["text/html"]
    enabled, html.enabled = html.enabled, True  # as in a notebook
    try:
        with capture_output() as shown, pytest.raises(LabError):
            _stream_to_display(refuse, str)
    finally:
        html.enabled = enabled
    assert "generating" in shown.outputs[0].data["text/html"]
    assert shown.outputs[-1].data["text/html"] == ""  # the card was cleared


def test_a_preset_refusal_speaks_of_the_word_typed(tiny):
    with pytest.raises(UsageError, match=r"^--accel fast \(here: spec=[\w:-]+\): spec="):
        run_magic(tiny, 'generate --temperature 0.8 --accel fast "Hello"')


def test_help_names_the_cell_magic_and_shows_defaults(tiny, capsys):
    run_magic(tiny, "help generate")
    out = capsys.readouterr().out
    assert "%%llm cell body" in out and "(default: 128)" in out
    run_magic(tiny, "help chat")
    assert "(default: 64)" in capsys.readouterr().out


def test_next_marks_only_a_cut_prompt_with_an_ellipsis(tiny):
    short = run_magic(tiny, 'next "The capital of France is"')
    assert "…The capital" not in short.to_html() and "The capital of France is" in short.to_html()
    long = run_magic(tiny, "next " + "word " * 30 + "end")
    assert "…" in long.to_html()


# -- names, unload and bounds through the magic -------------------------------------------------


def test_a_loaded_name_is_not_silently_replaced(tiny, capsys):
    from llmlab.session import default_lab

    run_magic(tiny, "chat --max-new-tokens 2", "remember me")
    with pytest.raises(UsageError, match="a model named 'tiny-llama' is already loaded"):
        run_magic(tiny, "load tiny:qwen2 --name tiny-llama")
    lab = default_lab()
    assert lab.models["tiny-llama"].spec == "tiny:llama" and lab.histories["tiny-llama"]
    run_magic(tiny, "load tiny:qwen2 --name tiny-llama --replace")
    assert lab.models["tiny-llama"].spec == "tiny:qwen2" and not lab.histories["tiny-llama"]
    run_magic(tiny, "load tiny:qwen2 --name tiny-llama")  # the same model again: a reload
    assert "loaded tiny-llama: qwen2" in capsys.readouterr().out


@pytest.mark.parametrize("line", ["unload ''", 'unload " "', "load tiny:qwen2 --name ''"])
def test_empty_names_are_refused_and_nothing_changes(tiny, line):
    from llmlab.session import default_lab

    with pytest.raises(UsageError):
        run_magic(tiny, line)
    assert list(default_lab().models) == ["tiny-llama"] and default_lab().active == "tiny-llama"


@pytest.mark.parametrize(
    "line, said",
    [
        ("moe-train --name tiny-llama", "a model named 'tiny-llama' is already loaded"),
        ("moe-train --name ''", "a model name must be non-empty"),
        ("moe-train --steps 0", "--steps takes a whole number from 1 to 100,000"),
        ("moe-train --steps -1", "--steps takes a whole number from 1"),
        ("moe-train --steps 100001", "--steps takes a whole number from 1"),
        ("moe-train --steps 1000000000000000000000000", "--steps takes a whole number from 1"),
        ("moe-train --steps 10**24", "invalid int value"),
    ],
)
def test_moe_train_refuses_before_training(tiny, line, said):
    import time

    start = time.perf_counter()
    with pytest.raises(UsageError, match=said) as err:
        run_magic(tiny, line)
    assert "\n" not in str(err.value) and time.perf_counter() - start < 5


@pytest.mark.parametrize(
    "line",
    [
        'lens --generate 1000000000 "Hi"',
        'lens --generate 2047 "Hi there"',
        'attention --generate 1000000000 "Hi"',
        'lens --compare int8 --generate 100000 "Hi"',
        'moe --generate 100000000 "Hi"',
    ],
)
def test_generate_past_the_context_is_refused_before_generating(tiny, line):
    import time

    if line.startswith("moe"):
        run_magic(tiny, "load tiny:mixtral --name tiny-llama --replace")
    start = time.perf_counter()
    with pytest.raises(UsageError, match="is more than the context leaves: tiny-llama reads"):
        run_magic(tiny, line)
    assert time.perf_counter() - start < 5


def test_a_lens_over_the_memory_budget_is_refused_before_generating(tiny, monkeypatch):
    import time

    from llmlab import memory
    from llmlab.generation import engine

    generated: list = []
    real = engine.generate
    monkeypatch.setattr(engine, "generate", lambda *a, **k: generated.append(1) or real(*a, **k))
    memory.set_budget("200KB")
    try:
        start = time.perf_counter()
        with pytest.raises(UsageError, match="lens capture would hold"):
            run_magic(tiny, 'lens --generate 1000 "Hi"')
        assert not generated and time.perf_counter() - start < 5
    finally:
        memory.set_budget(None)
    assert run_magic(tiny, 'lens --generate 2 "Hi"') is not None


def test_options_after_a_quoted_prompt_are_options_not_text(tiny):
    r = run_magic(tiny, 'generate "What is the capital of France?" --max-new-tokens 4')
    assert r.prompt == "What is the capital of France?" and r.settings.max_new_tokens == 4
    r = run_magic(tiny, "generate 'hi there' --raw --max-new-tokens 2")
    assert r.prompt == "hi there" and r.stats.new_tokens <= 2
    r = run_magic(tiny, 'next "The sky is" --show 5')
    assert r.prompt == "The sky is"
    # Refused in one line, never sent as text; the session keeps working.
    with pytest.raises(UsageError, match="follows the quoted prompt"):
        run_magic(tiny, 'generate "Hello," said the fox')
    with pytest.raises(UsageError, match="follows the options after the quoted prompt"):
        run_magic(tiny, 'generate "Hello" --max-new-tokens 2 world')
    with pytest.raises(UsageError, match="did you mean --max-new-tokens"):
        run_magic(tiny, 'generate "Hello" --max-tokens 2')
    # A quoted word is text even when it looks like a flag; after -- all is text.
    assert run_magic(tiny, 'generate --max-new-tokens 2 "-h"').prompt == "-h"
    r = run_magic(tiny, 'generate --max-new-tokens 2 -- "a" --raw')
    assert r.prompt == "a --raw"


def test_models_table_shows_wherever_the_line_is(tiny):
    from IPython.utils.capture import capture_output

    with capture_output() as shown:
        tiny.run_cell("%llm models\nx = 1", store_history=True)  # not the cell's last line
    assert len(shown.outputs) == 1 and "tiny-llama" in str(shown.outputs[0].data)
    with capture_output() as shown:
        tiny.run_cell("t = %llm models", store_history=True)
        tiny.run_cell("%llm models", store_history=True)  # the last line: not drawn twice
    assert len(shown.outputs) == 2
    with capture_output() as shown:
        tiny.run_cell("t", store_history=True)  # a later cell asks for it: shown
    assert len(shown.outputs) == 1 and "tiny-llama" in str(shown.outputs[0].data)
    assert tiny.user_ns["t"].loc["tiny-llama", "active"] == "●"


def test_a_folder_whose_name_is_not_utf8_is_one_line(tiny, tmp_path):
    import os

    from llmlab.models.tiny import build_tiny
    from llmlab.session import default_lab

    model, tokenizer = build_tiny("llama")
    model.save_pretrained(tmp_path / "saved")
    tokenizer.save_pretrained(tmp_path / "saved")
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9")  # latin-1 bytes in a folder name
    os.rename(tmp_path / "saved", raw)
    tiny.user_ns["folder"] = os.fsdecode(raw)  # "caf\udce9": a lone surrogate in the text
    for line in ("load {folder}", "load {folder} --name cafe"):
        # transformers' tokenizer library cannot open such a path: one line, nothing loaded
        with pytest.raises(UsageError, match="could not load") as err:
            run_magic(tiny, line)
        assert "\n" not in str(err.value)
    assert list(default_lab().models) == ["tiny-llama"]


@pytest.mark.parametrize(
    "failure",
    [UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), OSError(5, "EIO")],
)
def test_a_load_that_reports_failed_leaves_nothing_loaded(tiny, monkeypatch, failure):
    from llmlab.magics.commands import models

    from llmlab.session import default_lab

    def announce(lm):
        raise failure

    monkeypatch.setattr(models, "_announce_local", announce)
    with pytest.raises(UsageError, match="%llm load failed"):
        run_magic(tiny, "load tiny:qwen2")
    assert list(default_lab().models) == ["tiny-llama"] and default_lab().active == "tiny-llama"


def test_a_served_model_never_silently_takes_a_loaded_name(tiny):
    from llmlab.session import default_lab
    from tests.served_fake import MODEL, FakeServer

    server = FakeServer()
    try:
        with pytest.raises(UsageError, match="a model named 'tiny-llama' is already loaded"):
            run_magic(tiny, f"load openai:{server.url} --model {MODEL} --name tiny-llama")
        lab = default_lab()
        old = lab.models["tiny-llama"]
        assert old.spec == "tiny:llama"
        run_magic(tiny, f"load openai:{server.url} --model {MODEL} --name tiny-llama --replace")
        assert lab.models["tiny-llama"].capabilities.remote
        assert all(p.is_meta for p in old.model.parameters())  # the replaced one is freed
    finally:
        server.stop()
