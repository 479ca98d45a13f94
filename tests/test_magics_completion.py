"""Tab completion on %llm lines, through IPython's own completer (as Jupyter calls it), and
did-you-mean for mistyped flags."""

from __future__ import annotations

import pytest
from IPython.core.completer import provisionalcompleter
from IPython.core.error import UsageError

from tests.helpers import run_magic


def offered(ip, line: str) -> list[str]:
    """What Tab offers at the end of ``line``: the kernel's path (``completions``, Jedi on),
    checked against the terminal's older path (``complete``)."""
    with provisionalcompleter():
        new = [c.text for c in ip.Completer.completions(line, len(line))]
    assert ip.complete("", line, len(line))[1] == new
    return new


def test_subcommands_complete(ip):
    assert offered(ip, "%llm at") == ["attention"]
    assert offered(ip, "%%llm gen") == ["generate"]
    assert offered(ip, "r = %llm gen") == ["generate"]
    assert offered(ip, "%llm help tr") == ["tradeoff"]


def test_flags_complete_and_python_names_do_not(ip):
    assert offered(ip, "%llm attention --co") == ["--compare"]  # not compile/complex/copyright
    assert offered(ip, "%llm load --dt") == ["--dtype"]
    assert offered(ip, "%llm load --dtype b") == ["bfloat16"]


def test_model_names_and_configuration_keys_complete(ip):
    run_magic(ip, "load tiny:llama --name small")
    assert offered(ip, "%llm use ") == ["small"]
    assert offered(ip, "%llm generate --model ") == ["small"]
    assert offered(ip, "%llm generate --model=s") == ["--model=small"]
    assert "spec=" in offered(ip, "%llm generate --accel sp")
    assert offered(ip, "%llm generate --accel spec=prompt") == ["spec=prompt-lookup"]
    assert "quant=int8,spec=" in offered(ip, "%llm generate --accel quant=int8,sp")
    assert "spec=draft:small" in offered(ip, "%llm accel --config spec=dr")
    assert "tpot,kl" in offered(ip, "%llm tradeoff --axes tpot,")
    assert "tiny:llama" in offered(ip, "%llm load tiny:ll")


def test_no_completion_inside_prompt_text_or_a_cell_body(ip):
    assert offered(ip, '%llm generate "what does --co') == []
    with provisionalcompleter():
        body = "%%llm generate\nexplain --co"
        assert not [c for c in ip.Completer.completions(body, len(body)) if c.text.startswith("--")]


def test_a_mistyped_flag_gets_a_did_you_mean(ip):
    with pytest.raises(UsageError, match=r"arguments: --max-tokens; did you mean --max-new-tok"):
        run_magic(ip, 'generate --max-tokens 4 "hi"')
    with pytest.raises(UsageError, match=r"arguments: --dtipe float32; did you mean --dtype\?"):
        run_magic(ip, "load tiny:llama --dtipe float32")
    with pytest.raises(UsageError, match=r"arguments: --zzz \(see %llm help load\)"):
        run_magic(ip, "load tiny:llama --zzz")
