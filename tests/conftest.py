"""Shared fixtures. Nothing here may reach a model hub: tests run offline."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def default_lm():
    """The real embedded default model, loaded once per test session (slow tier)."""
    from llmlab.models.registry import load_model

    return load_model("default")


@pytest.fixture(scope="session")
def tiny_llama():
    from llmlab.models.registry import load_model

    return load_model("tiny:llama")


@pytest.fixture(scope="session")
def llama_server():
    """llama.cpp's OpenAI-compatible server on 127.0.0.1 serving the default model's GGUF,
    started once per session and stopped after it. scripts/test.sh builds it
    (scripts/llama_server.sh); elsewhere the served-engine tests skip with the reason."""
    from llmlab.served import llama

    if not llama.available():
        pytest.skip("llama-cpp-python[server] is not installed (bash scripts/llama_server.sh)")
    with llama.start_llama_server() as server:
        yield server


@pytest.fixture(scope="session")
def vllm_server():
    """vLLM's CPU build serving the default model's converted folder (bf16, eager), started once
    per session (about 70 s idle, minutes on a busy machine) and stopped after it.
    scripts/test.sh builds its venv (scripts/vllm_server.sh, once, ~4 min and 3.5 GB, outside the
    repository); where it is not built, or cannot start here, the tests skip and say why."""
    from llmlab.errors import LabError
    from llmlab.served import launch

    if missing := launch.engine_available("vllm"):
        pytest.skip(missing)
    try:
        server = launch.start_server("vllm")
    except LabError as err:
        pytest.skip(f"vLLM could not be started here: {err}")
    with server:
        yield server


@pytest.fixture
def ip():
    """An IPython shell with `%load_ext llmlab` done and a fresh default session."""
    from IPython.testing.globalipapp import get_ipython

    import llmlab.session

    shell = get_ipython()
    shell.run_line_magic("load_ext", "llmlab")
    llmlab.session._default_lab = None
    yield shell
    llmlab.session._default_lab = None
