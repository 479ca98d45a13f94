"""%llm serve: start a local serving engine (vLLM, llama.cpp) and load it as a served model."""

from __future__ import annotations

import argparse

from llmlab.magics.registry import Context, arg, command

from llmlab.errors import LabError


@command(
    "serve",
    "start a local serving engine (vllm or llama.cpp) on a model and load it as a served model; "
    "%llm unload stops it. Everything after MODEL goes to the engine, e.g. "
    "%llm serve vllm default --enable-prefix-caching",
    arg("--name", help="how to refer to it (default: the engine's name)"),
    arg("--port", type=int, help="port on 127.0.0.1 (default: a free one)"),
    arg(
        "--ready-timeout",
        type=float,
        help="seconds to wait for the server to answer (default: vllm 600, llama.cpp 120)",
    ),
    arg("engine", metavar="vllm|llama.cpp", help="the engine to start"),
    arg(
        "model",
        nargs="?",
        default="default",
        help="default (the embedded model: vLLM serves its converted folder, llama.cpp its "
        "GGUF), a model folder (vLLM) or a .gguf file (llama.cpp)",
    ),
    arg("engine_options", nargs=argparse.REMAINDER, help="the engine's own options, as written"),
)
def serve(ctx: Context, args) -> None:
    from llmlab.served.launch import normalize_engine, serve_model

    engine = normalize_engine(args.engine)
    name = args.name or engine
    old = ctx.lab.models.get(name)
    if old is not None:
        if getattr(old, "server", None) is None:
            raise LabError(f"a model named {name!r} is loaded; give this one another --name")
        ctx.lab.unload(name)  # its server stops: one server per name
        print(f"stopped the previous {name} server")
    print(
        f"starting {engine} on {args.model} (vLLM: about 70 s idle, minutes on a busy machine)…",
        flush=True,
    )
    sm = serve_model(
        ctx.lab,
        engine,
        args.model,
        args.engine_options,
        name=name,
        port=args.port,
        ready_timeout_s=args.ready_timeout,
    )
    server = sm.server
    extra = f", options {' '.join(server.options)}" if server.options else ""
    print(
        f"loaded {sm.name}: {engine} serving {server.model_id} at {server.url}, ready in "
        f"{server.start_seconds:.0f} s{extra}; %llm unload {sm.name} stops it"
    )
