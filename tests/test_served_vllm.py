"""Against vLLM's CPU build (continuous batching): the session's vLLM server on the default
model's converted folder (tests/conftest.py::vllm_server; skipped with the reason where
scripts/vllm_server.sh has not built it)."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from llmlab.errors import LabError
from llmlab.served import launch
from llmlab.session import Lab
from tests.helpers import run_magic

pytestmark = pytest.mark.slow


@pytest.fixture
def lab(vllm_server):
    lab = Lab()
    lab.load(f"openai:{vllm_server.url}", model=vllm_server.model_id, name="vllm")
    return lab


def test_generate_next_and_usage_against_vllm(lab):
    r = lab.generate("What is the capital of France?", max_new_tokens=16)
    assert "Paris" in r.text or "capital" in r.text  # bf16: a first-token near tie (design.md)
    # vLLM's usage counts the end-of-sequence token, which streams no text: one more than chunks.
    assert len(r.stats.token_times_s) <= r.stats.new_tokens <= len(r.stats.token_times_s) + 1
    assert r.stats.prompt_tokens > 5  # vLLM sends usage in the last chunk
    dist = lab.next_token("The capital of France is")
    assert len(dist.tokens) == 20


def test_exact_lengths_ignore_eos_counts_and_rates(lab):
    from llmlab.served import run_load_test

    sm = lab.model()
    test = run_load_test(
        sm, "1,4", requests=4, input_len=48, output_len=12, ignore_eos=True, slo="ttft=60s"
    )
    assert test.status == "done", test.warnings
    assert not test.warnings  # the server's counts match the lengths asked for
    frame = test.to_pandas()
    assert (frame["input_tokens"] == "48").all() and (frame["output_tokens"] == "12").all()
    assert (frame["ttft_n"] == 4).all() and frame["ttft_p99_ms"].isna().all()
    assert (frame["itl_n"] == 4 * 11).all() and frame["itl_p90_ms"].notna().all()
    rates = run_load_test(
        sm, rates="2", requests=4, input_len=32, output_len=4, ignore_eos=True, warmup=False
    )
    assert rates.status == "done" and list(rates.to_pandas().index) == [2.0]


def test_multi_turn_conversations_share_a_prefix(lab):
    from llmlab.served import run_load_test

    test = run_load_test(
        lab.model(), "2", requests=4, input_len=16, output_len=4, turns=2, prefix_len=64,
        warmup=False,
    )  # fmt: skip
    row = test.to_pandas().iloc[0]
    assert test.status == "done" and row["requests"] == 4
    assert row["ttft_turn1_p50_ms"] is not None and row["ttft_later_p50_ms"] is not None


def test_serve_magic_starts_vllm_and_unload_stops_it(ip, capsys):
    if launch.engine_available("vllm"):
        pytest.skip(launch.engine_available("vllm"))
    try:
        run_magic(ip, "serve vllm default --max-num-seqs 4")
    except UsageError as err:
        if "did not answer in" in str(err):
            pytest.skip(f"vLLM too slow to start here: {err}")
        raise
    out = capsys.readouterr().out
    assert "loaded vllm: vllm serving smollm2 at http://127.0.0.1:" in out
    assert "options --max-num-seqs 4" in out
    from llmlab.session import default_lab

    server = default_lab().model("vllm").server
    assert run_magic(ip, "generate --max-new-tokens 4 Hi").stats.new_tokens >= 1
    run_magic(ip, "unload vllm")
    assert not server.running and server not in launch.running_servers()


def test_an_option_vllm_rejects_is_its_own_message_in_one_line():
    if launch.engine_available("vllm"):
        pytest.skip(launch.engine_available("vllm"))
    before = launch.running_servers()  # the session's server may be running
    with pytest.raises(LabError) as err:
        launch.start_server("vllm", options=["--no-such-option", "3"])
    message = str(err.value)
    assert message.startswith("vLLM exited at start: api_server.py: error: unrecognized")
    assert "--no-such-option" in message and "\n" not in message
    assert launch.running_servers() == before


def test_served_notebook_runs_against_vllm(vllm_server, monkeypatch):
    from pathlib import Path

    import nbformat

    from tests.notebooks import EXAMPLES, execute_notebook, outputs_text

    monkeypatch.setenv("LLMLAB_SERVED_URL", vllm_server.url)
    monkeypatch.setenv("LLMLAB_SERVED_MODEL", vllm_server.model_id)
    nb = execute_notebook(EXAMPLES / "served.ipynb")
    text = outputs_text(nb)
    assert "TTFT" in text and "served:served" in text and "top-1 judged" in text
    assert "Load test" in text and "goodput" in text and "highest rate meeting" in text
    assert "ignores ignore_eos" not in text  # vLLM honours it
    build = Path(__file__).resolve().parent.parent / "build"
    build.mkdir(exist_ok=True)
    nbformat.write(nb, build / "served-vllm.ipynb")
