"""End to end on the real default model: the measured labels reproduce the registry's split."""

from __future__ import annotations

import pytest

#: Every acceleration that runs on a CPU here, except compile (minutes of compilation) and the
#: quantized KV caches: they change only the cached keys/values during generation, which a
#: teacher-forced forward never uses, so only their greedy text could show it (see docs).
CPU_CONFIGS = [
    "kv=off",
    "kv=static",
    "prefix=on",
    "spec=prompt-lookup",
    "spec=self-int8",
    "quant=int8",
    "quant=int4",
    "attn=eager",
    "dtype=bf16",
]


@pytest.mark.slow
def test_measured_labels_agree_with_the_registry(default_lm):
    from llmlab.tradeoff import run_sweep

    sweep = run_sweep(
        default_lm,
        ["baseline", *CPU_CONFIGS],
        ["What is the capital of France?", "Write one sentence about the sea."],
        max_new_tokens=12,
        repeats=3,
    )
    assert sweep.status == "done"
    report = "\n" + sweep.to_text()
    for p in sweep.points:
        assert p.status == "ok", report
        assert p.measured_label == p.claimed_label, report
    assert sweep.point("quant=int8").kl.mean > 1e-4
    assert sweep.point("kv=off").kl.mean == 0.0
