"""Encoder, decoder and cross-attention (T5) and a hybrid model (Qwen3-Next) in JupyterLab.

Tiny random checkpoints saved to disk and loaded by path. Screenshots land in
build/screenshots/attention-{t5,hybrid}-*.png; look at them after a change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.attention_families import save_tiny
from tests.browser import run_cells_in_jupyterlab

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"


def test_stacks_and_hybrid_layers_render(tmp_path):
    t5, hybrid = save_tiny("t5", tmp_path), save_tiny("qwen3_next", tmp_path)
    cells = [
        f"%load_ext llmlab\n%llm load {t5} --name t5",
        '%llm attention --generate 6 "The animal did not cross the street."',
        f"%llm load {hybrid} --name hybrid",
        '%llm attention "The animal did not cross the street."',
    ]
    shots: list[Path] = []

    def shoot(locator, name):
        locator.scroll_into_view_if_needed()
        shots.append(SHOTS / f"attention-{name}.png")
        locator.screenshot(path=str(shots[-1]))

    def actions(page):
        views = page.locator(".llmlab-att-stacks")
        assert views.count() == 2
        seq2seq, hybrid_view = views.nth(0), views.nth(1)
        buttons = seq2seq.locator(".llmlab-att-stackbtn")
        assert buttons.all_inner_texts() == [
            "Encoder self-attention",
            "Decoder masked self-attention",
            "Cross-attention (decoder → encoder)",
        ]
        shoot(seq2seq, "t5-encoder")
        buttons.nth(2).click()
        page.wait_for_timeout(500)
        header = seq2seq.locator(".llmlab-att-header").inner_text()
        assert "cross-attention" in header
        # Cross-attention: decoder tokens on the left, encoder tokens on the right.
        left = seq2seq.locator(".llmlab-att-left .llmlab-att-tok").count()
        right = seq2seq.locator(".llmlab-att-right .llmlab-att-tok").count()
        assert left != right
        seq2seq.locator(".llmlab-att-left .llmlab-att-tok").nth(2).click()
        page.wait_for_timeout(800)
        shoot(seq2seq, "t5-cross")
        seq2seq.locator(".llmlab-att-tab", has_text="Grid").click()
        seq2seq.locator(".llmlab-att-thumb").nth(1).click()
        page.wait_for_timeout(1000)
        assert "could not" not in seq2seq.locator(".llmlab-att-status").inner_text()
        shoot(seq2seq, "t5-cross-grid")
        buttons.nth(1).click()
        shoot(seq2seq, "t5-decoder")
        # The hybrid: layer 0 is linear attention, named, without weights.
        hybrid_view.locator(".llmlab-att-tab", has_text="Grid").click()
        empty = hybrid_view.locator(".llmlab-att-nolayer")
        assert empty.count() == 1
        assert "linear attention (Gated DeltaNet)" in empty.inner_text()
        shoot(hybrid_view, "hybrid-grid")

    run_cells_in_jupyterlab(
        cells,
        SHOTS / "attention-stacks-notebook.png",
        wait_for=".llmlab-att-left .llmlab-att-tok",
        actions=actions,
        timeout_s=300,
    )
    for path in shots:
        assert path.stat().st_size > 3_000
