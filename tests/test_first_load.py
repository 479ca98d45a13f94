"""The first load's conversion reads well in a saved notebook: one line before, one after."""

from __future__ import annotations

from llmlab.models import default
from tests.test_faults import fake_default  # noqa: F401  (the fixture)


def test_conversion_says_one_finished_line_without_the_cache_path(fake_default, capsys):  # noqa: F811
    default.converted_dir()
    out = capsys.readouterr()
    assert "converting" in out.out and "converted once in" in out.out
    cache = str(default.cache_root())
    assert cache not in out.out and cache not in out.err
    assert "%|" not in out.err  # no progress bar frozen at its first frame


def test_the_gguf_readers_own_bar_is_quiet_while_converting():
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    with default._no_progress_bars():
        assert gguf_utils.tqdm(range(3)).disable
    assert not gguf_utils.tqdm(range(3), file=open("/dev/null", "w")).disable  # noqa: SIM115
