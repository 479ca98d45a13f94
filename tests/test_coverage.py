"""The coverage matrix's parts, fast: small configs, one family checked in-process, the page."""

from __future__ import annotations

import pytest

from llmlab.coverage import configs, matrix


@pytest.mark.parametrize("family", ["llama", "gpt2", "jamba", "granitemoehybrid", "llama4"])
def test_configs_are_small_and_keep_their_kind(family):
    model, tokenizer = configs.build(family)
    assert sum(p.numel() for p in model.parameters()) < 5_000_000
    assert model.config.get_text_config().vocab_size == len(tokenizer)
    kinds = getattr(model.config.get_text_config(), "layer_types", None)
    if family in ("jamba", "granitemoehybrid"):
        assert kinds is None or len(set(kinds)) > 1  # a hybrid keeps attention and Mamba


def test_unbuildable_types_say_why():
    with pytest.raises(configs.Unbuildable, match="config"):
        configs.tiny_config("no-such-model-type")


def test_one_family_end_to_end(tmp_path):
    report = matrix.check_family("llama", tmp_path)
    assert not report.skipped and report.model_class == "LlamaForCausalLM"
    statuses = {name: o.status for name, o in report.features.items()}
    assert statuses == {**dict.fromkeys(matrix.FEATURES, "works"), "moe": "n/a"}
    page = matrix.markdown([report], seconds=1.0, versions=matrix.versions())
    assert "| lens | 1 | 0 | 0 | 0 |" in page and "| llama | LlamaForCausalLM | ✓ |" in page


# -- the command line: a partial run never replaces the full page; mistakes are one line -------


@pytest.fixture
def fake_run(monkeypatch):
    """matrix.run answering at once with a report per asked type (all features working)."""
    asked: list = []

    def run(types, *, workers, progress, timeout):
        asked.append((types, workers, timeout))
        reports = []
        for t in types or ["llama", "gpt2", "mistral"]:
            report = matrix.FamilyReport(t, model_class="X")
            report.features = {f: matrix.Outcome("works") for f in matrix.FEATURES}
            reports.append(report)
        return reports

    monkeypatch.setattr(matrix, "run", run)
    return asked


@pytest.fixture
def full_page(tmp_path, monkeypatch):
    """A docs/families.md of three families in a scratch checkout."""
    from llmlab.coverage import __main__ as cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    reports = []
    for t in ("llama", "gpt2", "mistral"):
        report = matrix.FamilyReport(t, model_class="X")
        report.features = {f: matrix.Outcome("works") for f in matrix.FEATURES}
        reports.append(report)
    matrix.write(reports, cli.FULL_PAGE, None, 1.0)
    return cli.FULL_PAGE


@pytest.mark.parametrize("types", [["gpt2"], ["gpt2", "llama"]])
def test_a_partial_run_never_replaces_the_full_page(full_page, fake_run, capsys, types):
    from llmlab.coverage.__main__ import PARTIAL_PAGE, main

    before = full_page.read_text()
    assert main(types) == 0
    assert full_page.read_text() == before
    assert matrix.families_in(PARTIAL_PAGE.read_text()) == set(types)
    # asked for in so many words, it is still refused: the page would lose families
    assert main([*types, "--out", str(full_page)]) == 2
    err = capsys.readouterr().err.strip()
    assert "writing it would drop" in err and len(err.splitlines()) == 1
    assert full_page.read_text() == before


@pytest.mark.parametrize(
    "argv, said",
    [
        (["no-such-type"], "unknown model type 'no-such-type'"),
        (["gpt2", "gpt2"], "named twice"),
        (["--timeout", "0"], "--timeout"),
        (["--timeout", "-5"], "--timeout"),
        (["--timeout", "1.5"], "--timeout"),
        (["--workers", "0"], "--workers"),
        (["--workers", "-1"], "--workers"),
        (["--out", "/nonexistent/families.md"], "the folder /nonexistent does not exist"),
        (["--out", "docs"], "is a folder"),
        (["--out", "docs/x.md", "--json", "docs/./x.md"], "name the same file"),
    ],
)
def test_bad_arguments_are_one_line_and_write_nothing(full_page, fake_run, capsys, argv, said):
    from llmlab.coverage.__main__ import main

    before = full_page.read_text()
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own refusals
        status = exit_.code
    err = capsys.readouterr().err.strip()
    assert status == 2 and said in err and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert fake_run == [] and full_page.read_text() == before


def test_a_full_run_writes_the_page_with_the_timeout_given(full_page, fake_run):
    from llmlab.coverage.__main__ import main

    assert main(["--timeout", "7", "--workers", "1"]) == 0
    assert fake_run == [(None, 1, 7)]
    assert matrix.families_in(full_page.read_text()) == {"llama", "gpt2", "mistral"}


def test_the_timeout_reaches_the_worker_processes():
    # Workers are spawned: they import the module afresh, so a timeout set in the parent's
    # module global never reached them (every family got the default 90 s).
    (report,) = matrix.run(["llama"], workers=1, timeout=1)
    assert "out of time (1 s" in (report.skipped or str(report.features))
