"""Devices: parsing, dtype and kernel choice, memory figures, device maps and disk offload.

CUDA and MPS paths run only where that hardware is present; elsewhere they skip with the reason.
"""

from __future__ import annotations

import pytest
import torch

from llmlab import devices
from llmlab.errors import LabError
from llmlab.models.registry import load_model
from tests.helpers import run_magic

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
needs_mps = pytest.mark.skipif(
    not devices._mps_available(), reason="no Apple MPS backend on this machine"
)


@pytest.mark.parametrize("text", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"])
def test_device_spellings_accepted(text):
    assert devices.check_device_text(text) == text


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "CPU", "tpu", "cuda:0:1"])
def test_device_spellings_refused_in_one_line(text):
    with pytest.raises(LabError, match="unknown device"):
        devices.check_device_text(text)


def test_device_type():
    assert [devices.device_type(d) for d in ("cpu", "cuda", "cuda:3", "mps")] == [
        "cpu",
        "cuda",
        "cuda",
        "mps",
    ]


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    assert devices.resolve_device("auto") == "cpu"
    monkeypatch.setattr(devices, "_mps_available", lambda: True)
    assert devices.resolve_device("auto") == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.resolve_device("auto") == "cuda"


def test_missing_devices_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    with pytest.raises(LabError, match="no CUDA GPU"):
        devices.resolve_device("cuda:1")
    with pytest.raises(LabError, match="MPS"):
        devices.resolve_device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert devices.resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(LabError, match="2 CUDA device"):
        devices.resolve_device("cuda:2")


def test_default_dtype_per_device(monkeypatch):
    assert devices.resolve_dtype("auto", "cpu") == torch.float32
    assert devices.resolve_dtype("auto", "mps") == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert devices.resolve_dtype("auto", "cuda:1") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert devices.resolve_dtype("auto", "cuda") == torch.float16
    with pytest.raises(LabError, match="float16 is not supported on CPU"):
        devices.resolve_dtype("float16", "cpu")


def test_attention_auto_picks_flash_only_where_it_runs(monkeypatch):
    monkeypatch.setattr(devices, "has_flash_attention", lambda: True)
    assert devices.resolve_attention("auto", "cuda", torch.bfloat16) == "flash_attention_2"
    assert devices.resolve_attention("auto", "cuda", torch.float32) == "sdpa"
    assert devices.resolve_attention("auto", "cpu", torch.bfloat16) == "sdpa"
    assert devices.resolve_attention("eager", "cuda", torch.bfloat16) == "eager"
    monkeypatch.setattr(devices, "has_flash_attention", lambda: False)
    assert devices.resolve_attention("auto", "cuda", torch.bfloat16) == "sdpa"


def test_cpu_memory_figure_is_labelled_as_process_peak():
    reading = devices.peak_memory("cpu")
    assert reading.kind == "process peak RSS" and reading.bytes > 10 * 2**20
    assert reading.reserved_bytes is None
    assert devices.free_memory_bytes("cpu") > 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("200MB", 200 * 10**6), ("2GiB", 2 * 2**30), ("1.5 GB", 1_500_000_000), ("4096", 4096)],
)
def test_parse_size(text, expected):
    assert devices.parse_size(text) == expected


def test_parse_max_memory():
    budget, disk = devices.parse_max_memory("0=20GB, cuda:1=10GB,cpu=200MB,disk")
    assert budget == {0: 20 * 10**9, 1: 10 * 10**9, "cpu": 200 * 10**6} and disk
    assert devices.parse_max_memory("cpu=1GB") == ({"cpu": 10**9}, False)
    for bad, why in [("cpu", "DEVICE=SIZE"), ("tpu=1GB", "unknown device"), ("cpu=lots", "size")]:
        with pytest.raises(LabError, match=why):
            devices.parse_max_memory(bad)


@needs_cuda
def test_cuda_memory_figure_has_allocated_and_reserved_peaks():
    devices.reset_peak_memory("cuda")
    x = torch.ones(2**20, device="cuda")
    devices.synchronize("cuda")
    reading = devices.peak_memory("cuda")
    assert reading.kind == "CUDA peak allocated" and reading.bytes >= x.numel() * 4
    assert reading.reserved_bytes >= reading.bytes


@needs_cuda
def test_tiny_model_on_cuda_defaults_to_a_half_type():
    lm = load_model("tiny:llama", device="cuda")
    assert lm.dtype in ("bfloat16", "float16") and lm.device == "cuda"


@needs_mps
def test_tiny_model_on_mps():
    lm = load_model("tiny:llama", device="mps")
    assert lm.dtype == "float16"
    assert devices.peak_memory("mps").kind.startswith("MPS")


# -- device maps and offload ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    lm = load_model("tiny:llama")
    folder = tmp_path_factory.mktemp("tiny-llama")
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return str(folder)


def _greedy(lm, n=6):
    from llmlab.generation.engine import generate
    from llmlab.generation.settings import GenerationSettings

    return generate(lm, "hello there", GenerationSettings(max_new_tokens=n), raw=True).token_ids


def test_offload_to_disk_keeps_greedy_output(tiny_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path))
    whole = load_model(tiny_folder)
    assert whole.placement == "cpu" and not whole.is_split
    budget = f"cpu={whole.weight_bytes // 2}B,disk"
    split = load_model(tiny_folder, device_map="auto", max_memory=budget)
    assert split.is_split and split.device == "cpu"
    placed = devices.placement_bytes(split.model)
    assert set(placed) == {"cpu", "disk"}
    assert split.summary()["device"] == split.placement and "disk" in split.placement
    assert split.weight_bytes == pytest.approx(whole.weight_bytes, rel=0.01)
    assert _greedy(split) == _greedy(whole)


def test_spilling_to_disk_needs_consent(tiny_folder):
    with pytest.raises(LabError, match="add ',disk'"):
        load_model(tiny_folder, device_map="auto", max_memory="cpu=60KB")
    with pytest.raises(LabError, match="saved weights"):
        load_model("tiny:llama", device_map="auto")


def test_load_magic_device_flags(ip, tiny_folder, tmp_path, monkeypatch, capsys):
    from IPython.core.error import UsageError

    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path))
    with pytest.raises(UsageError, match="unknown device"):
        run_magic(ip, "load tiny:llama --device gpu")
    run_magic(ip, f"load {tiny_folder} --name split --device-map auto --max-memory cpu=360KB,disk")
    assert "disk" in capsys.readouterr().out
    table = run_magic(ip, "models")
    assert "disk" in table.loc["split", "device"]


@pytest.mark.slow
def test_default_model_split_between_cpu_and_disk(default_lm, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path))
    split = load_model("default", device_map="auto", max_memory="cpu=150MB,disk")
    assert set(devices.placement_bytes(split.model)) == {"cpu", "disk"}
    assert _greedy(split, 8) == _greedy(default_lm, 8)


def test_gpu_check_dry_runs_end_to_end_on_cpu(tmp_path, capsys, monkeypatch):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", script)
    gpu_check = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(__import__("sys").modules, "gpu_check", gpu_check)  # for its dataclasses
    spec.loader.exec_module(gpu_check)
    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path))
    assert gpu_check.main(["--dry", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    table = out[out.index("== gpu_check on CPU ==") :]
    for row in ("load", "decode, default", "attention capture", "MoE routing capture", "sweep"):
        assert row in table, row
    assert (tmp_path / "gpu_check_sweep.html").stat().st_size > 1000
    assert "failed" not in table
