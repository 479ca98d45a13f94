"""Thread policy (issue 21): --threads on load, a note on a busy machine, and figures that say
under which thread count they were taken."""

from __future__ import annotations

import pytest
import torch

from llmlab.errors import LabError
from llmlab.generation.engine import generate
from llmlab.generation.settings import GenerationSettings
from llmlab.models.registry import load_model
from tests.helpers import run_magic


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_load_sets_threads_and_footers_say_them(keep_threads):
    lm = load_model("tiny:llama", threads=1)
    assert torch.get_num_threads() == 1
    r = generate(lm, "hi", GenerationSettings(max_new_tokens=3))
    assert r.stats.threads == 1 and "· 1 thread" in r.stats.footer()
    assert r.to_dict()["stats"]["threads"] == 1
    with pytest.raises(LabError, match="whole number of threads >= 1"):
        load_model("tiny:llama", threads=0)


def test_a_busy_machine_gets_one_line_with_what_to_do(monkeypatch, keep_threads):
    monkeypatch.setattr("os.getloadavg", lambda: (9.5, 9.0, 8.0))
    torch.set_num_threads(2)
    lm = load_model("tiny:llama")
    busy = [n for n in lm.notes if "busy" in n]
    assert len(busy) == 1 and "load average 9.5" in busy[0] and "--threads 1" in busy[0]
    assert "\n" not in busy[0]
    # On one thread there is nothing to advise; on an idle machine nothing to say.
    assert not [n for n in load_model("tiny:llama", threads=1).notes if "busy" in n]
    monkeypatch.setattr("os.getloadavg", lambda: (0.3, 0.3, 0.3))
    assert not [n for n in load_model("tiny:llama", threads=2).notes if "busy" in n]


def test_load_magic_takes_threads(ip, capsys, keep_threads):
    run_magic(ip, "load tiny:llama --threads 1")
    assert "cpu/float32 on 1 thread," in capsys.readouterr().out
    with pytest.raises(Exception, match="for local models"):
        run_magic(ip, "load openai:http://127.0.0.1:9/v1 --threads 1")


def test_the_footer_peak_is_this_calls_not_the_processs_lifetime(tiny_llama):
    import resource

    big = b"x" * (600 * 2**20)  # a lifetime peak far above what a tiny generation needs
    del big
    lifetime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    r = generate(tiny_llama, "hi", GenerationSettings(max_new_tokens=3))
    assert r.stats.peak_memory_bytes < lifetime - 400 * 2**20
    assert "while it ran" in r.stats.peak_memory_kind
