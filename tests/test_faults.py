"""Faults a user or an unlucky machine produces: a damaged cache, a bad folder, bad input.

The default model's conversion is replaced by a tiny random model here (seeded, so every build
has the same weights), so each cache fault costs milliseconds instead of a 20 s conversion.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmlab.errors import LabError
from llmlab.models import default
from llmlab.models.registry import load_model


@pytest.fixture
def fake_default(tmp_path, monkeypatch):
    """The default model converted from a tiny llama into a fresh cache; returns the list of
    conversions made (one per call of the GGUF reader)."""
    from llmlab.models.tiny import build_tiny

    conversions: list[Path] = []

    def load_gguf(gguf: Path):
        conversions.append(gguf)
        return build_tiny("llama")

    gguf = tmp_path / "wheel" / "model.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"\0" * 4096)
    monkeypatch.setattr(default, "_load_gguf", load_gguf)
    monkeypatch.setattr(default, "gguf_path", lambda: gguf)
    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path / "cache"))
    return conversions


def _same_weights_as_tiny(lm) -> bool:
    import torch

    from llmlab.models.tiny import build_tiny

    reference = build_tiny("llama")[0].state_dict()
    return all(torch.equal(t.cpu(), reference[k]) for k, t in lm.model.state_dict().items())


def test_conversion_writes_a_manifest_and_later_loads_trust_it(fake_default):
    folder = default.converted_dir()
    assert len(fake_default) == 1
    manifest = json.loads((folder / default.MANIFEST).read_text())
    assert {"config.json", "model.safetensors"} <= set(manifest["files"])
    assert default.verify(folder) is None
    assert default.converted_dir() == folder and len(fake_default) == 1


def _overwrite_tensor_bytes(path: Path) -> None:
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(4096))


def _truncate(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _bad_header(path: Path) -> None:
    with path.open("r+b") as f:
        f.seek(8)
        f.write(b"\xff\xfe not json")


@pytest.mark.parametrize(
    "damage, said",
    [
        (_overwrite_tensor_bytes, "changed bytes in model.safetensors"),
        (_truncate, "truncated or changed model.safetensors"),
        (_bad_header, "damaged model.safetensors header"),
    ],
)
def test_a_damaged_cache_is_converted_again_and_said_in_one_line(
    fake_default, capsys, damage, said
):
    folder = default.converted_dir()
    capsys.readouterr()
    damage(folder / "model.safetensors")
    lm = load_model("default")
    out = capsys.readouterr().out
    assert said in out and "converting it again" in out
    assert len(fake_default) == 2
    assert _same_weights_as_tiny(lm)  # not the garbage the damaged file held
    assert default.verify(folder) is None


def test_a_cache_without_manifest_is_converted_again(fake_default, capsys):
    folder = default.converted_dir()
    (folder / default.MANIFEST).unlink()
    default.converted_dir()
    assert "no checksum manifest" in capsys.readouterr().out
    assert len(fake_default) == 2 and default.verify(folder) is None


@pytest.mark.parametrize("kind", ["a file", "inside a file"])
def test_an_unwritable_cache_fails_before_converting(fake_default, tmp_path, monkeypatch, kind):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    cache = blocker if kind == "a file" else blocker / "sub"
    monkeypatch.setenv("LLMLAB_CACHE", str(cache))
    with pytest.raises(LabError, match=r"cannot write the converted default model.*LLMLAB_CACHE"):
        default.converted_dir()
    assert fake_default == []  # nothing was converted first


def test_too_little_disk_fails_before_converting(fake_default, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10**6, 10**6, 1000))
    with pytest.raises(LabError, match="needs about"):
        default.converted_dir()
    assert fake_default == []


@pytest.mark.slow
def test_the_real_converted_cache_verifies(default_lm):
    folder = default.converted_dir()
    assert default.verify(folder) is None
