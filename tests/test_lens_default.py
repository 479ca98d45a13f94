"""The logit lens on the real default model (slow tier): the output row is the model's own
prediction, earlier layers are not, and int8 parts from float32 measurably."""

from __future__ import annotations

import pytest
import torch

from llmlab.lens import compare, lens

pytestmark = pytest.mark.slow
TEXT = "The Eiffel Tower is in the city of"


def test_default_model_lens(default_lm):
    result = lens(default_lm, TEXT)
    assert result.n_rows == 31 and result.reading.startswith("final norm (model.norm)")
    ids = default_lm.tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.inference_mode():
        logits = default_lm.model(input_ids=ids).logits[0].float()
    # The output row is the model's own distribution; the lens check passed at ≤ 1e-4.
    assert result.top_ids[-1, :, 0].tolist() == logits.argmax(-1).tolist()
    assert result.top(-1, -1)[0][0] == " Paris" and result.max_error <= 1e-4
    # The answer is not yet on top in the first half of the network, and is by the output.
    assert result.final_rank[: result.n_rows // 2, -1].min() > 0
    assert result.layer_table()["KL to final (nats)"].iloc[-1] == 0


def test_default_model_int8_divergence(default_lm):
    diff = compare(default_lm, "int8", TEXT)
    table = diff.layer_table()
    assert len(table) == 31 and (table["KL(A‖B) (nats)"] >= 0).all()
    assert table["KL(A‖B) (nats)"].iloc[-1] > 0  # int8 changes the output distribution
    assert diff.a.top(-1, -1)[0][0] == " Paris"
