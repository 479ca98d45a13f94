"""%llm lens: the magic, its help, its one-line errors, and comparing two loaded models."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from llmlab.lens import LensComparison, LensResult
from tests.helpers import run_magic


def test_lens_magic_returns_the_lens(ip, capsys):
    run_magic(ip, "load tiny:llama")
    result = run_magic(ip, 'lens "hello lens"')
    assert isinstance(result, LensResult)
    assert result.n_tokens == len("hello lens") and result.n_rows == 5
    generated = run_magic(ip, "lens --generate 3 hi")
    assert generated.n_prompt < generated.n_tokens <= generated.n_prompt + 3
    body = run_magic(ip, "lens", "a {literal} body")
    assert body.text == "a {literal} body"
    diff = run_magic(ip, "lens --compare bf16 hello")
    assert isinstance(diff, LensComparison) and diff.b.label.endswith("(dtype=bf16)")
    # Another loaded model with the same tokenizer is a variant too.
    run_magic(ip, "load tiny:qwen2 --name other")
    other = run_magic(ip, "lens --model tiny-llama --compare other hello")
    assert other.b.model == "other" and other.a.model == "tiny-llama"
    run_magic(ip, "help lens")
    assert "--compare VARIANT" in capsys.readouterr().out


def test_lens_magic_errors_are_one_line(ip):
    run_magic(ip, "load tiny:llama")
    with pytest.raises(UsageError, match="empty"):
        run_magic(ip, "lens")
    with pytest.raises(UsageError, match="neither a loaded model"):
        run_magic(ip, "lens --compare nonsense hello")
    with pytest.raises(UsageError, match="--generate must be a positive"):
        run_magic(ip, "lens --generate -2 hello")
    # The session keeps working after each error.
    assert isinstance(run_magic(ip, "lens hello"), LensResult)
