"""One model, one experiment at a time: captures during a background sweep wait their turn."""

from __future__ import annotations

import threading

import pytest

from llmlab.attention import attention, hook_count
from llmlab.models.guard import busy_with, exclusive
from llmlab.moe import capture_routing
from llmlab.tradeoff import run_sweep

PROMPTS = ["hello there", "the quick brown fox"]


@pytest.fixture
def tiny():
    from llmlab.models.registry import load_model

    return load_model("tiny:llama")


def _captures_during(sweep, capture) -> list:
    """Run ``capture`` again and again until the background sweep ends."""
    results = []
    while sweep.status == "running":
        results.append(capture())
    return results


def test_attention_capture_during_a_background_sweep_leaves_both_intact(tiny, capsys):
    # attn=eager switches the kernel of the very model the sweep times: the case where a
    # capture that saved "the kernel before" and hooked the layers broke both.
    sweep = run_sweep(
        tiny,
        "baseline,attn=eager,kv=off",
        PROMPTS,
        max_new_tokens=12,
        repeats=3,
        warmup=1,
        text="a short text to score.",
        background=True,
    )
    captured = _captures_during(sweep, lambda: attention(tiny, "look at this"))
    sweep.wait(timeout=300)
    assert sweep.status == "done", sweep.warnings
    assert [p.status for p in sweep.points] == ["ok"] * 4, [p.error for p in sweep.points]
    assert captured and all(r.captured.weights.shape[0] == 4 for r in captured)
    assert tiny.attn_implementation == "sdpa"
    assert hook_count(tiny.model) == 0
    assert busy_with(tiny) is None
    # The baseline is deterministic: all repeats agreed, and with the row before.
    assert not any(p.nondeterministic for p in sweep.points)
    assert "waiting for the running tradeoff sweep" in capsys.readouterr().out


def test_moe_capture_during_a_background_sweep():
    from llmlab.models.registry import load_model

    lm = load_model("tiny:mixtral")
    sweep = run_sweep(
        lm, "baseline,attn=eager", PROMPTS, max_new_tokens=8, repeats=3, warmup=1, background=True
    )
    routed = _captures_during(sweep, lambda: capture_routing(lm, "route me", generate=2))
    sweep.wait(timeout=300)
    assert [p.status for p in sweep.points] == ["ok"] * 3, [p.error for p in sweep.points]
    assert routed and all(
        r.inputs[0].experts.shape[1] == len(r.inputs[0].token_ids) for r in routed
    )
    assert hook_count(lm.model) == 0 and lm.attn_implementation == "sdpa"


def test_exclusive_is_reentrant_and_says_what_waits(tiny):
    said: list[str] = []
    inside, release = threading.Event(), threading.Event()

    def hold():
        # The same thread never waits on itself (a sweep row that generates).
        with exclusive(tiny, "tradeoff sweep (baseline)"), exclusive(tiny, "generation"):
            inside.set()
            release.wait(10)

    worker = threading.Thread(target=hold)
    worker.start()
    inside.wait(10)
    assert busy_with(tiny) == "tradeoff sweep (baseline)"
    threading.Timer(0.3, release.set).start()
    with exclusive(tiny, "attention capture", on_wait=said.append):
        assert busy_with(tiny) == "attention capture"
    worker.join()
    assert said == [
        "attention capture is waiting for the running tradeoff sweep (baseline) on tiny-llama…"
    ]
    assert busy_with(tiny) is None


def test_an_error_inside_releases_the_model(tiny):
    with pytest.raises(ZeroDivisionError), exclusive(tiny, "generation"):
        raise ZeroDivisionError
    done = []

    def other():
        with exclusive(tiny, "capture"):
            done.append(True)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(5)
    assert done, "the lock was left held after an exception"


def test_ctrl_c_while_waiting_leaves_the_model_to_its_holder(tiny):
    import os
    import signal

    inside, release = threading.Event(), threading.Event()

    def hold():
        with exclusive(tiny, "tradeoff sweep (baseline)"):
            inside.set()
            release.wait(10)

    worker = threading.Thread(target=hold)
    worker.start()
    inside.wait(10)
    threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt), exclusive(tiny, "attention capture", on_wait=print):
        pytest.fail("the capture ran while the sweep held the model")
    assert busy_with(tiny) == "tradeoff sweep (baseline)"
    release.set()
    worker.join()
    assert busy_with(tiny) is None
    with exclusive(tiny, "generation"):  # free again
        pass


def test_a_model_without_a_module_still_gets_a_guard(tiny):
    import dataclasses

    served_like = dataclasses.replace(tiny, model=None)  # e.g. a model behind a server
    with exclusive(served_like, "generation"):
        assert busy_with(served_like) == "generation"
    assert busy_with(served_like) is None


def test_a_broken_view_of_a_sweep_is_one_line(tiny, capsys):
    def broken_view(sweep, event):
        raise RuntimeError("the plot could not redraw")

    sweep = run_sweep(
        tiny, "baseline", ["hi"], max_new_tokens=2, repeats=3, warmup=0, listeners=[broken_view]
    )
    assert sweep.status == "done"
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "a view of the sweep failed to update: RuntimeError: the plot could not redraw" in (
        captured.out
    )
