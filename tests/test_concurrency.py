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


# -- chat turns, unload and training respect the model's lock -----------------------------------


@pytest.mark.parametrize("turns", [2, 3, 5])
def test_chat_turns_sent_at_once_keep_every_user_turn(turns):
    from llmlab.session import Lab

    lab = Lab()
    lab.load("tiny:llama")
    start = threading.Barrier(turns)
    errors: list[BaseException] = []

    def turn(i: int) -> None:
        try:
            start.wait(10)
            lab.chat(f"message {i}", max_new_tokens=6)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=turn, args=(i,)) for i in range(turns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    history = lab.histories["tiny-llama"]
    users = [m["content"] for m in history if m["role"] == "user"]
    assert sorted(users) == [f"message {i}" for i in range(turns)]
    assert [m["role"] for m in history] == ["user", "assistant"] * turns


def _sweep_running(lab, name: str = "tiny-llama"):
    sweep = run_sweep(
        lab.models[name],
        "baseline,kv=off,attn=eager",
        PROMPTS,
        max_new_tokens=12,
        repeats=3,
        warmup=1,
        background=True,
    )
    deadline = __import__("time").monotonic() + 60
    while not sweep.current and sweep.status == "running":
        assert __import__("time").monotonic() < deadline
        __import__("time").sleep(0.01)
    return sweep


@pytest.mark.parametrize("how", ["by name", "the active one"])
def test_unload_during_a_background_sweep_stops_it_and_frees_the_model(capsys, how):
    import gc
    import weakref

    from llmlab.errors import LabError
    from llmlab.session import Lab

    lab = Lab()
    lm = lab.load("tiny:llama")
    storage = weakref.ref(next(lm.model.parameters()).untyped_storage())
    sweep = _sweep_running(lab)
    lab.unload("tiny-llama" if how == "by name" else None)
    assert sweep.done and sweep.status == "stopped"  # ended before unload returned
    out = capsys.readouterr().out
    assert out.count("unloading tiny-llama: stopping the running tradeoff sweep first") == 1
    assert "tiny-llama" not in lab.models and lab.active is None
    assert all(p.is_meta for p in lm.model.parameters())  # freed, though the sweep keeps lm
    gc.collect()
    assert storage() is None
    assert busy_with(lm) is None
    from llmlab.generation.engine import generate

    with pytest.raises(LabError, match="tiny-llama was unloaded; load it again"):
        generate(lm, "hi")  # a result still holding the model gets one line, not meta errors
    lab.load("tiny:llama")  # the name is free again, the session goes on
    assert lab.generate("hi", max_new_tokens=2).stats.new_tokens >= 1


def test_unload_waits_for_a_chat_turn_in_another_thread():
    from llmlab.session import Lab

    lab = Lab()
    lm = lab.load("tiny:llama")
    inside, release = threading.Event(), threading.Event()
    real = lab._generate

    def slow_generate(*args, **kwargs):
        inside.set()
        release.wait(10)
        return real(*args, **kwargs)

    lab._generate = slow_generate
    worker = threading.Thread(target=lambda: lab.chat("hello", max_new_tokens=2))
    worker.start()
    inside.wait(10)
    threading.Timer(0.3, release.set).start()
    lab.unload("tiny-llama")  # waits for the turn: it never runs on freed weights
    worker.join(30)
    assert not worker.is_alive() and all(p.is_meta for p in lm.model.parameters())


def test_reloading_a_name_frees_the_old_copy():
    from llmlab.session import Lab

    lab = Lab()
    first = lab.load("tiny:llama")
    second = lab.load("tiny:llama")  # the same model again: allowed, the old copy is freed
    assert lab.models["tiny-llama"] is second
    assert all(p.is_meta for p in first.model.parameters())
    assert not any(p.is_meta for p in second.model.parameters())
