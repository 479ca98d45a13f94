"""Start llama.cpp's OpenAI-compatible server (``llama-cpp-python[server]``) on 127.0.0.1,
serving the GGUF file the embedded default model comes from: a real serving engine to try the
served-model tools on with no cluster. Optional: llmlab never needs it, and
``bash scripts/llama_server.sh`` builds and installs it (portable CPU flags, cached wheel).

::

    from llmlab.served.llama import start_llama_server
    with start_llama_server() as server:     # or server = start_llama_server(); server.stop()
        print(server.url)                    # http://127.0.0.1:PORT/v1, model "smollm2-gguf"
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llmlab.errors import LabError

#: The name the server gives the default model (``--model`` when loading it).
DEFAULT_ALIAS = "smollm2-gguf"
START_TIMEOUT_S = 90.0


def available() -> bool:
    """Whether ``llama-cpp-python[server]`` is installed (its server needs uvicorn too)."""
    return all(importlib.util.find_spec(m) for m in ("llama_cpp", "uvicorn", "fastapi"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """A running ``python -m llama_cpp.server``; ``stop()`` ends it (also on ``with`` exit)."""

    def __init__(
        self,
        gguf: str | Path | None = None,
        *,
        alias: str = DEFAULT_ALIAS,
        port: int | None = None,
        threads: int | None = None,
        n_ctx: int = 2048,
    ) -> None:
        if not available():
            raise LabError(
                "llama-cpp-python[server] is not installed; `bash scripts/llama_server.sh` "
                "builds it (about 5 minutes, once)"
            )
        if gguf is None:
            from llmlab.models.default import gguf_path

            gguf = gguf_path()
        self.gguf, self.alias = Path(gguf), alias
        self.port = port or free_port()
        self.log = Path(tempfile.mkstemp(prefix="llmlab-llama-server-", suffix=".log")[1])
        # llama.cpp's worker threads spin at barriers: on a machine busier than its cores, fewer
        # threads run much faster (set LLMLAB_LLAMA_THREADS=1 there).
        threads = (
            threads or int(os.environ.get("LLMLAB_LLAMA_THREADS", 0)) or min(4, os.cpu_count() or 1)
        )
        cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.gguf),
            "--model_alias",
            alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(n_ctx),
            "--n_threads",
            str(threads),
            # By default a new request interrupts the one streaming (its stream just ends);
            # a server under load must queue them instead.
            "--interrupt_requests",
            "False",
        ]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
                raise LabError(f"llama.cpp's server exited at start: {tail[0]} (log: {self.log})")
            try:
                if httpx.get(f"{self.url}/models", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise LabError(
            f"llama.cpp's server did not answer in {START_TIMEOUT_S:g} s (log: {self.log})"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> LlamaServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.process.poll() is None else "stopped"
        return f"LlamaServer({self.url}, model {self.alias!r}, {state})"


def start_llama_server(gguf: str | Path | None = None, **options) -> LlamaServer:
    """Start the server and wait until it answers ``/v1/models`` (see :class:`LlamaServer`)."""
    return LlamaServer(gguf, **options)
