"""Start llama.cpp's OpenAI-compatible server (``llama-cpp-python[server]``) on 127.0.0.1,
serving the GGUF file the embedded default model comes from: a real serving engine to try the
served-model tools on with no cluster. Optional: llmlab never needs it, and
``bash scripts/llama_server.sh`` builds and installs it (portable CPU flags, cached wheel).
The process handling (readiness wait, log lines, stop) is :mod:`llmlab.served.launch`'s,
shared with vLLM.

::

    from llmlab.served.llama import start_llama_server
    with start_llama_server() as server:     # or server = start_llama_server(); server.stop()
        print(server.url)                    # http://127.0.0.1:PORT/v1, model "smollm2-gguf"
"""

from __future__ import annotations

from pathlib import Path

from llmlab.served.launch import DEFAULT_NAMES, EngineServer, free_port, start_server
from llmlab.served.launch import llama_available as available

#: The name the server gives the default model (``--model`` when loading it).
DEFAULT_ALIAS = DEFAULT_NAMES["llama.cpp"]
LlamaServer = EngineServer  # the name this class had before vLLM joined it

__all__ = ["DEFAULT_ALIAS", "LlamaServer", "available", "free_port", "start_llama_server"]


def start_llama_server(
    gguf: str | Path | None = None,
    *,
    alias: str = DEFAULT_ALIAS,
    port: int | None = None,
    threads: int | None = None,
    n_ctx: int = 2048,
) -> EngineServer:
    """Start the server and wait until it answers ``/v1/models``."""
    options = [] if n_ctx == 2048 else ["--n_ctx", str(n_ctx)]
    return start_server("llama.cpp", gguf, options, port=port, model_id=alias, threads=threads)
