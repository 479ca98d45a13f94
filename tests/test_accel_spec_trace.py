"""Speculative decoding made visible: per-step drafts, acceptance by position, same output."""

from __future__ import annotations

import pytest

from llmlab.accel import generate_accelerated
from llmlab.accel.spec_trace import DraftRecorder, DraftStep, DraftTrace
from llmlab.generation.engine import generate
from llmlab.generation.settings import GenerationSettings
from tests.helpers import run_magic

GREEDY = GenerationSettings(max_new_tokens=24)
REPEATS = "one two three four five six one two three four five six one two three"
EVIL = "</script><script>window.__pwned = 1</script>"


class _Generator:
    """A stand-in candidate generator: drafts a fixed continuation, as transformers calls it."""

    def __init__(self, drafts):
        self.drafts = drafts
        self.updates = []

    def get_candidates(self, input_ids):
        import torch

        draft = torch.tensor([self.drafts.pop(0)])
        return torch.cat([input_ids, draft], dim=1), None

    def update_candidate_strategy(self, input_ids, scores, num_matches):
        self.updates.append(num_matches)


def test_recorder_keeps_drafts_and_what_each_step_added():
    import torch

    gen = DraftRecorder()
    g = gen.attach(_Generator([[5, 6, 7], [9]]))
    ids = torch.tensor([[1, 2]])
    out, _ = g.get_candidates(ids)
    assert out.tolist() == [[1, 2, 5, 6, 7]]
    g.update_candidate_strategy(
        torch.tensor([[1, 2, 5, 6, 8]]), None, 2
    )  # 5, 6 kept; 8 instead of 7
    g.get_candidates(torch.tensor([[1, 2, 5, 6, 8]]))
    g.update_candidate_strategy(torch.tensor([[1, 2, 5, 6, 8, 9, 4]]), None, 1)
    assert g.updates == [2, 1]  # the wrapped generator still learns the outcome
    first, second = gen.steps
    assert (first.accepted, first.target_token) == (2, 8)
    assert (second.accepted, second.target_token) == (1, 4)
    assert gen.accepted == 3


def test_acceptance_by_position_counts_drafts_that_reached_it():
    trace = DraftTrace(
        model="m",
        method="spec=x",
        steps=[
            DraftStep(drafted=[1, 2, 3], added=[1, 2, 9]),
            DraftStep(drafted=[4], added=[5]),
            DraftStep(drafted=[], added=[6]),
        ],
        texts={1: "a", 2: "b", 3: "c", 4: "d", 5: "e", 6: "f", 9: EVIL},
    )
    rows = trace.acceptance_by_position()
    assert [(r["drafted"], r["accepted"]) for r in rows] == [(2, 1), (1, 1), (1, 0)]
    assert (trace.drafted, trace.accepted, trace.new_tokens) == (4, 2, 5)
    assert EVIL not in trace.to_html()
    assert "[ab]~c~" in trace.to_text() and "~d~e" in trace.to_text()


@pytest.mark.parametrize("config", ["spec=prompt-lookup", "spec=self-int8"])
def test_traced_generation_keeps_greedy_output(tiny_llama, config):
    ref = generate(tiny_llama, REPEATS, GREEDY, raw=True)
    res = generate_accelerated(tiny_llama, REPEATS, GREEDY, config, raw=True)
    assert res.token_ids == ref.token_ids
    trace = res.drafts
    assert [t for s in trace.steps for t in s.added] == res.token_ids
    assert len(trace.steps) == res.stats.extra["target_passes"]
    assert trace.drafted == res.stats.extra["drafted_tokens"]
    assert res.stats.extra["acceptance_rate"] == round(trace.accepted / trace.drafted, 3)
    payload = trace.payload()
    assert payload["method"] == config and len(payload["steps"]) == len(trace.steps)
    assert all(str(t) in payload["texts"] for t in res.token_ids)


def test_plain_generation_has_no_drafts(tiny_llama):
    assert generate_accelerated(tiny_llama, "Hi", GREEDY, "baseline", raw=True).drafts is None


def test_generate_show_drafts_option(ip, capsys):
    run_magic(ip, "load tiny:llama")
    res = run_magic(
        ip,
        f'generate --raw --max-new-tokens 16 --accel spec=prompt-lookup --show-drafts "{REPEATS}"',
    )
    assert isinstance(res.drafts, DraftTrace)
    assert "DraftTrace(" in capsys.readouterr().out  # a terminal shows the trace as text
    run_magic(ip, 'generate --raw --max-new-tokens 4 --show-drafts "Hi"')
    assert "nothing was drafted" in capsys.readouterr().out


def test_accel_panel_runs_carry_their_drafts(tiny_llama):
    from llmlab.accel.panel import AccelPanelState

    state = AccelPanelState(lm=tiny_llama, models={"tiny-llama": tiny_llama}, max_new_tokens=12)
    state.run("spec=prompt-lookup", REPEATS, 12)
    drafts = state.runs[-1]["drafts"]
    assert drafts["method"] == "spec=prompt-lookup" and drafts["steps"]
    state.run("baseline", REPEATS, 12)
    assert state.runs[-1]["drafts"] is None
