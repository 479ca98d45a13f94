"""Lab: several models, the active one, and per-model chat history."""

from __future__ import annotations

import pytest

from llmlab.errors import LabError
from llmlab.session import Lab


def test_load_use_unload():
    lab = Lab()
    lab.load("tiny:llama")
    lab.load("tiny:qwen2")
    assert lab.active == "tiny-qwen2"
    lab.use("tiny-llama")
    assert lab.model().name == "tiny-llama"
    assert lab.unload() == "tiny-llama"
    assert lab.active == "tiny-qwen2"
    with pytest.raises(LabError, match="no model named 'nope'"):
        lab.use("nope")


def test_chat_keeps_history_per_model_and_resets():
    lab = Lab()
    lab.load("tiny:llama")
    first = lab.chat("hi", max_new_tokens=3)
    second = lab.chat("again", max_new_tokens=3)
    history = lab.histories["tiny-llama"]
    assert [t["role"] for t in history] == ["user", "assistant", "user", "assistant"]
    assert history[1]["content"] == first.text
    assert second.stats.prompt_tokens > first.stats.prompt_tokens
    lab.load("tiny:qwen2")
    lab.chat("other model", max_new_tokens=2)
    assert len(lab.histories["tiny-qwen2"]) == 2 and len(history) == 4
    lab.reset_chat("tiny-llama")
    assert lab.histories["tiny-llama"] == []


def test_interrupted_chat_turn_is_not_kept():
    lab = Lab()
    lab.load("tiny:llama")

    def stop(ids, _):
        raise KeyboardInterrupt

    r = lab.chat("hi", max_new_tokens=5, on_token=stop)
    assert r.stats.stopped == "interrupted"
    assert lab.histories["tiny-llama"] == []


def test_a_new_chat_can_refer_to_the_last_generated_answer():
    lab = Lab()
    lab.load("tiny:llama")
    answer = lab.generate("Tell me a story", max_new_tokens=4)
    lab.chat("Summarize the previous answer", max_new_tokens=2)
    history = lab.histories["tiny-llama"]
    assert [t["content"] for t in history[:2]] == ["Tell me a story", answer.text]
    assert len(history) == 4
    lab.generate("another", max_new_tokens=2)
    lab.chat("next turn", max_new_tokens=2)  # an ongoing chat is not rewritten
    assert len(lab.histories["tiny-llama"]) == 6
    lab.reset_chat()
    lab.chat("fresh", max_new_tokens=2)
    assert lab.histories["tiny-llama"][0]["content"] == "fresh"
