"""Long commands say what runs and how far: in the cell (one updated line) or on stderr."""

from __future__ import annotations

from IPython.utils.capture import capture_output
from llmlab.magics.progress import Steps

from tests.helpers import run_magic


def test_steps_in_a_cell_end_as_one_finished_line(ip):
    html = ip.display_formatter.formatters["text/html"]
    enabled, html.enabled = html.enabled, True  # as in a notebook
    try:
        with capture_output() as shown, Steps(True, "attention --compare int8", 2) as steps:
            steps("preparing the variant int8")
            steps("capturing every head")
    finally:
        html.enabled = enabled
    lines = [o.data["text/html"] for o in shown.outputs]
    assert "step 1 of 2" in lines[1] and "preparing the variant int8" in lines[1]
    assert "step 2 of 2" in lines[2]
    assert "done in" in lines[-1] and "<progress" not in lines[-1]  # reports keep this line


def test_attention_compare_reports_its_steps_in_a_terminal(ip, capsys):
    run_magic(ip, "load tiny:llama")
    run_magic(ip, 'attention --compare kv=off --generate 2 "The cat sat on the mat."')
    err = capsys.readouterr().err
    assert "attention --compare kv=off" in err and "capturing every head" in err
