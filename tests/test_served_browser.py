"""Served models in JupyterLab in headless Chromium, against real engines: llama.cpp's server and
vLLM's CPU build (each test runs against both; an engine not built here skips with the reason).
Screenshots land in build/screenshots/served-*-ENGINE.png; look at them after a change."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import run_cells_in_jupyterlab, screenshot_offline_html

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
POINT = ".scatterlayer .trace .points path.point"


@pytest.fixture(params=["llama.cpp", "vllm"])
def engine(request):
    """(engine name, its running server): the session's llama.cpp or vLLM server."""
    fixture = "llama_server" if request.param == "llama.cpp" else "vllm_server"
    return request.param, request.getfixturevalue(fixture)


def _load(server) -> str:
    return (
        f"%load_ext llmlab\n%llm load openai:{server.url} --model {server.model_id} --name served"
    )


def test_generate_chat_next_in_jupyterlab(engine):
    name, server = engine
    cells = [
        _load(server),
        '%llm generate --max-new-tokens 24 "What is the capital of France?"',
        "%%llm chat --max-new-tokens 16\nAnd of Italy?",
        "%llm next The capital of France is",
    ]
    shot = run_cells_in_jupyterlab(
        cells, SHOTS / f"served-generate-{name}.png", wait_for=".llmlab-nt-prompt, .llmlab-card"
    )
    assert shot.exists()


def test_mixed_tradeoff_sweep_in_jupyterlab(engine):
    name, server = engine
    cells = [
        _load(server) + "\n%llm load default --name local\n%llm use local",
        "sweep = %llm tradeoff --configs baseline,served:served --price served=0.10 "
        "--max-new-tokens 8 --warmup 0 --axes tpot,top1 --wait",
        "sweep.to_pandas()[['ttft_ms', 'tpot_ms', 'decode_tps', 'top1', 'greedy_match']]",
    ]

    def actions(page):
        page.wait_for_function(
            "() => document.body.innerText.includes('served:served')", timeout=60_000
        )

    shot = run_cells_in_jupyterlab(
        cells,
        SHOTS / f"served-tradeoff-{name}.png",
        wait_for=".llmlab-tradeoff " + POINT,
        actions=actions,
        timeout_s=480,
    )
    assert shot.exists()


def test_load_sweep_live_and_offline(engine, tmp_path):
    name, server = engine
    cells = [
        _load(server),
        "test = %llm load-test --concurrency 1,2,4,8 --requests 4 --max-tokens 16 "
        "--slo ttft=1s,itl=100ms",
        f"test.save_html({str(tmp_path / 'load.html')!r}); test.to_pandas().shape",
    ]
    results: dict = {}

    def actions(page):
        results["points"] = page.locator(".llmlab-loadtest " + POINT).count()
        results["text"] = page.locator(".llmlab-loadtest").first.inner_text()

    run_cells_in_jupyterlab(
        cells,
        SHOTS / f"served-loadtest-{name}.png",
        wait_for=".llmlab-loadtest " + POINT,
        actions=actions,
    )
    assert results["points"] == 3 * 4  # TTFT, ITL, E2E at each of the 4 levels
    assert "goodput" in results["text"] and "done" in results["text"]
    shot = screenshot_offline_html(
        tmp_path / "load.html", SHOTS / f"served-loadtest-offline-{name}.png", wait_for=POINT
    )
    assert shot.exists()
