"""What a family's KV cache can do (llmlab/accel/caches.py): families that keep no cache, or
whose cache breaks preallocated or several tokens at once, are refused in one line up front."""

from __future__ import annotations

import pytest

from llmlab.accel.registry import check, parse_config
from llmlab.coverage.configs import build
from llmlab.errors import LabError
from llmlab.models.registry import load_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("caches")

    def load(family: str):
        folder = root / family
        if not folder.exists():
            model, tokenizer = build(family)
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
        return load_model(str(folder))

    return load


@pytest.mark.parametrize(
    "family, why",
    [
        ("bert", "bert keeps none: it is loaded as a bidirectional encoder (is_decoder=False)"),
        ("mpt", "mpt keeps none: its config turns the cache off (use_cache=False)"),
        ("prophetnet", "prophetnet cannot check drafts"),
    ],
)
def test_prompt_lookup_refused_where_drafts_cannot_be_checked(saved, family, why):
    with pytest.raises(LabError, match="spec=prompt-lookup cannot run here") as err:
        check(parse_config("spec=prompt-lookup"), saved(family))
    assert why in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "family, why",
    [
        ("deepseek_v4", "static cache has no layer for deepseek_v4's heavily_compressed_attention"),
        ("xlm", "xlm cannot use a preallocated cache"),
    ],
)
def test_static_cache_refused_where_transformers_cannot_run_it(saved, family, why):
    with pytest.raises(LabError, match="kv=static cannot run here") as err:
        check(parse_config("kv=static"), saved(family))
    assert why in str(err.value)


def test_a_family_with_a_cache_passes_both(saved):
    lm = saved("llama")
    check(parse_config("spec=prompt-lookup"), lm)
    check(parse_config("kv=static"), lm)
