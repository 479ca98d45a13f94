"""Engine configurations as tradeoff points: a serving engine started with named options, measured
on the sweep's prompts, stopped, and judged against the local reference like any served point.

::

    %llm tradeoff --configs "baseline,engine:vllm,engine:vllm+prefix-caching=on,
                             engine:vllm+spec=ngram,engine:vllm+kv=fp8"

``engine:ENGINE`` is the engine with llmlab's defaults (:mod:`llmlab.served.launch`); ``+`` adds a
named option. The names map to the engine's own flags, so a sweep reads the same on any engine:

========================  =========================================================
``prefix-caching=on|off``  vLLM ``--enable-prefix-caching`` / ``--no-enable-prefix-caching``
``spec=ngram``             vLLM n-gram speculative decoding (prompt lookup, 3 tokens)
``kv=fp8``                 vLLM ``--kv-cache-dtype fp8`` (the CPU attention backend has it)
========================  =========================================================

An option the engine does not have (llama.cpp's server has none of these) is refused in one line
before anything starts; one the engine rejects at start greys the point out with the engine's
own message (the sweep records it as failed, with that line). Each point starts its own server
and stops it when measured, so points never share a cache.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from llmlab.errors import LabError

PREFIX = "engine:"

#: Speculative decoding by n-gram lookup in the prompt (vLLM's "ngram" method): the defaults of
#: vLLM's docs example, which suit answers that copy their context.
NGRAM = {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 4}

#: name -> value -> vLLM flags. Each value's claim: does it keep greedy output identical?
VLLM_OPTIONS: dict[str, dict[str, tuple[list[str], bool]]] = {
    "prefix-caching": {
        "on": (["--enable-prefix-caching"], True),
        "off": (["--no-enable-prefix-caching"], True),
    },
    "spec": {
        "ngram": (["--speculative-config", json.dumps(NGRAM)], True),
        "off": ([], True),
    },
    "kv": {
        "fp8": (["--kv-cache-dtype", "fp8"], False),
        "auto": ([], True),
    },
}
ENGINE_OPTIONS = {"vllm": VLLM_OPTIONS, "llama.cpp": {}}


@dataclass
class EngineConfig:
    """``engine:vllm+prefix-caching=on``: the engine, its named options and their flags."""

    engine: str
    options: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    output_preserving: bool = True

    @property
    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in self.options.items()]
        return PREFIX + "+".join([self.engine, *parts])


def parse_engine_config(text: str) -> EngineConfig:
    """``"engine:vllm+spec=ngram+kv=fp8"`` -> :class:`EngineConfig`; one line for a mistake."""
    from llmlab.served.launch import normalize_engine

    body = text.strip().removeprefix(PREFIX)
    engine_text, *parts = [p.strip() for p in body.split("+")]
    if not engine_text:
        raise LabError(f"{text!r}: name the engine, e.g. engine:vllm+prefix-caching=on")
    engine = normalize_engine(engine_text)
    table = ENGINE_OPTIONS[engine]
    config = EngineConfig(engine)
    for part in parts:
        name, sep, value = part.partition("=")
        if not sep or name not in table or value not in table[name]:
            known = ", ".join(f"{n}={'|'.join(v)}" for n, v in table.items()) or "none"
            raise LabError(f"{engine} has no option {part!r} here; it has: {known}")
        flags, keeps = table[name][value]
        config.options[name] = value
        config.flags += flags
        config.output_preserving &= keeps
    return config


@contextlib.contextmanager
def engine_point(config: EngineConfig, **server_options) -> Iterator:
    """The served model of one engine configuration, for the block: started, loaded, stopped."""
    from llmlab.served.launch import start_server
    from llmlab.served.model import load_served

    with start_server(config.engine, None, config.flags, **server_options) as server:
        sm = load_served(f"openai:{server.url}", name=config.label, model=server.model_id)
        sm.server = server
        try:
            yield sm
        finally:
            sm.endpoint.close()
