"""%llm load / models / use / unload."""

from __future__ import annotations

import sys

from IPython.display import display
from llmlab.magics.registry import Context, arg, command

from llmlab.devices import DEVICE_MAPS, DEVICES, DTYPES, format_bytes
from llmlab.errors import LabError
from llmlab.files import safe_text
from llmlab.models.registry import ATTN_IMPLEMENTATIONS


@command(
    "load",
    "load a model: 'default' (embedded SmolLM2-135M-Instruct), tiny:FAMILY, a folder, a Hub id "
    "or openai:URL (a served model)",
    arg("spec", nargs="?", default="default", help="what to load (default: the embedded model)"),
    arg("--name", help="how to refer to it (default: derived from the spec)"),
    arg(
        "--replace",
        action="store_true",
        help="replace another model loaded under the same name (else that is refused)",
    ),
    arg(
        "--device",
        default="auto",
        metavar="|".join(DEVICES),
        help="auto picks CUDA, then Apple MPS, then the CPU",
    ),
    arg(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="auto: float32 on CPU, bfloat16 on CUDA (float16 on older cards), float16 on MPS",
    ),
    arg(
        "--attn",
        default="auto",
        choices=ATTN_IMPLEMENTATIONS,
        help="attention kernel; auto: flash_attention_2 on CUDA where flash-attn is installed, "
        "else sdpa",
    ),
    arg(
        "--device-map",
        choices=DEVICE_MAPS,
        help="spread the layers over GPUs, CPU RAM and disk (accelerate) for models bigger "
        "than one device",
    ),
    arg(
        "--max-memory",
        help="per-device budget for --device-map, e.g. 0=20GB,1=20GB,cpu=64GB,disk "
        "('disk' allows offloading the rest to llmlab's cache)",
    ),
    arg("--trust-remote-code", action="store_true", help="allow a Hub repo's own model code"),
    arg(
        "--allow-pickle",
        action="store_true",
        help="allow weights saved only as a PyTorch pickle (pytorch_model.bin), read with "
        "torch's restricted unpickler; load only files you trust",
    ),
    arg(
        "--threads",
        type=int,
        help="torch CPU threads for the session (process-wide); on a busy machine 1 is often "
        "several times faster (default: torch's, one per core)",
    ),
    arg("--model", help="with openai:URL: the model name the server knows (docs/served.md)"),
    arg("--api-key-env", metavar="VAR", help="with openai:URL: the env variable holding the key"),
    arg(
        "--timeout",
        type=float,
        default=60.0,
        help="with openai:URL: seconds to wait for the server's next event (the first included)",
    ),
    arg(
        "--deadline",
        type=float,
        help="with openai:URL: seconds one request may take in all (default 600, or --timeout "
        "where that is longer)",
    ),
)
def load(ctx: Context, args) -> None:
    if args.spec.startswith("openai:"):
        return _load_served(ctx, args)
    if args.model or args.api_key_env:
        raise LabError("--model and --api-key-env are for served models: openai:http://HOST/v1")
    ctx.lab.load(
        args.spec,
        name=args.name,
        replace=args.replace,
        announce=_announce_local,
        device=args.device,
        dtype=args.dtype,
        attn_implementation=args.attn,
        trust_remote_code=args.trust_remote_code,
        allow_pickle=args.allow_pickle,
        device_map=args.device_map,
        max_memory=args.max_memory,
        threads=args.threads,
    )


def _announce_local(lm) -> None:
    # Printed before the model joins the session: a line that fails leaves nothing loaded.
    # safe_text: a folder whose name is not UTF-8 bytes reads as text with lone surrogates.
    s = lm.summary()
    line = (
        f"loaded {lm.name}: {s['family']}, {s['params']} params, {lm.placement}/{lm.dtype}"
        f"{_on_threads(lm.device)}, "
        f"{s['attention']} attention, weights {format_bytes(lm.weight_bytes)}, "
        f"in {lm.load_seconds:.1f} s ({lm.source})"
    )
    print(safe_text(line))
    for note in lm.notes:
        print(safe_text(f"note: {note}"))


def _on_threads(device: str) -> str:
    from llmlab.models.threads import threads_text

    text = threads_text(device)
    return f" on {text}" if text else ""


def _load_served(ctx: Context, args) -> None:
    if args.allow_pickle:
        raise LabError("--allow-pickle is for local weights; a served model's stay on its server")
    if args.threads is not None:
        raise LabError("--threads is for local models; a server sets its own threads")
    ctx.lab.load(
        args.spec,
        name=args.name,
        replace=args.replace,
        announce=lambda lm: print(
            f"loaded {lm.name}: {lm.source}, answered in {lm.load_seconds:.2f} s"
        ),
        model=args.model,
        api_key_env=args.api_key_env,
        timeout_s=args.timeout,
        deadline_s=args.deadline,
    )


@command("models", "list the loaded models (the active one is marked)")
def models(ctx: Context, args):
    import pandas as pd

    rows = [
        {"active": "●" if name == ctx.lab.active else "", **lm.summary()}
        for name, lm in ctx.lab.models.items()
    ]
    if not rows:
        print("no model loaded; `%llm load` loads the embedded default")
        return None
    frame = pd.DataFrame(rows).set_index("name")
    # Shown wherever the line is in its cell (a value is only drawn on a cell's last line);
    # the returned frame, drawn once here, is not drawn again as that cell's value.
    display(frame)
    return _shown_here(frame)


def _shown_here(frame):
    """``frame`` as a DataFrame that the cell which displayed it does not display again (its
    ``Out[n]``); anywhere else (``t`` in a later cell, ``display(t)``) it shows in full."""
    import weakref

    import pandas as pd

    from llmlab.results import current_execution

    class ShownFrame(pd.DataFrame):
        _metadata = ["_shown_in"]

        @property
        def _constructor(self):
            return pd.DataFrame  # what pandas derives from it is a plain frame

        def _ipython_display_(self) -> None:
            shown_in = getattr(self, "_shown_in", None)
            if shown_in is not None and shown_in() is current_execution():
                if "ipykernel" not in sys.modules:
                    print(f"({len(self)} loaded, shown above)")  # ends the terminal's Out[n]
                return
            display(pd.DataFrame(self))

    shown = ShownFrame(frame)
    run = current_execution()
    shown._shown_in = weakref.ref(run) if run is not None else None
    return shown


@command("use", "make a loaded model the active one", arg("name"))
def use(ctx: Context, args) -> None:
    lm = ctx.lab.use(args.name)
    print(f"active model: {lm.name}")


@command("unload", "free a loaded model (default: the active one)", arg("name", nargs="?"))
def unload(ctx: Context, args) -> None:
    name = ctx.lab.unload(args.name)
    print(f"unloaded {name}; active model: {ctx.lab.active or 'none'}")
