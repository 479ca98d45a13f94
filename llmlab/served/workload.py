"""What a load test sends: synthetic prompts of an exact token length in the served model's
tokenizer, arrival schedules for request-rate levels, and multi-turn conversations that share a
prefix — the workloads of vLLM's ``bench serve`` (``--dataset-name random``, ``--request-rate``,
``--burstiness``) and GuideLLM (synthetic data, ``--rate-type poisson|constant``, sweeps).

The tokenizer is the served model's, reached in this order: a local tokenizer folder given by the
user (``--tokenizer``), the server's own ``/tokenize`` and ``/detokenize`` endpoints (vLLM has
them), or the folder of a model llmlab started itself (``%llm serve``). Each prompt is checked
against the server's usage report when it runs (``LoadLevel.input_tokens``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from llmlab.errors import LabError

if TYPE_CHECKING:
    from llmlab.served.model import ServedModel

MAX_INPUT_LEN = 1_000_000
MAX_OUTPUT_LEN = 100_000
MAX_RATE = 10_000.0  # requests per second
ARRIVALS = ("poisson", "constant")

#: Plain words the synthetic prompts are drawn from: every tokenizer splits them the same way on
#: every round trip (random token ids, vLLM's approach, can re-tokenize to another length).
_WORDS = (  # noqa: SIM905 - a list literal of 110 words reads worse
    "time year people way day man thing woman life child world school state family student "
    "group country problem hand part place case week company system program question work "
    "government number night point home water room mother area money story fact month lot "
    "right study book eye job word business issue side kind head house service friend father "
    "power hour game line end member law car city community name president team minute idea "
    "kid body information back parent face others level office door health person art war "
    "history party result change morning reason research girl guy moment air teacher force "
    "education river garden music light paper table window green small large early young"
).split()


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...

    special_tokens: int  # what the server adds to every prompt (a BOS token, or none)


def check_lengths(input_len: int | None, output_len: int | None) -> None:
    """One line for a length of 0, below 0, or beyond any model's context."""
    for flag, value, top in (
        ("--input-len", input_len, MAX_INPUT_LEN),
        ("--output-len", output_len, MAX_OUTPUT_LEN),
    ):
        if value is not None and not 1 <= value <= top:
            raise LabError(f"{flag} must be 1..{top:,} tokens, got {value:,}")


def parse_rates(text: str | Sequence[float]) -> list[float]:
    """``"0.5,1,2"`` -> ``[0.5, 1.0, 2.0]`` requests per second, each in (0, MAX_RATE]."""
    try:
        items = [x for x in text.split(",") if x.strip()] if isinstance(text, str) else text
        rates = [float(x) for x in items]
    except ValueError:
        raise LabError(f"--rates takes requests per second, e.g. 0.5,1,2; got {text!r}") from None
    if not rates or any(not (0 < r <= MAX_RATE) or math.isnan(r) for r in rates):
        raise LabError(f"request rates must be above 0 and at most {MAX_RATE:g} req/s, e.g. 1,2")
    return rates


def arrival_times(rate: float, count: int, kind: str = "poisson", seed: int = 0) -> list[float]:
    """Send times (seconds from the level's start) of ``count`` requests at ``rate`` req/s,
    drawn the way vLLM's ``bench serve`` draws them, so that ``--request-rate R --burstiness 1
    --seed S`` there and ``rate=R, seed=S`` here send at the same moments (benchmarks compare
    the two clients on one schedule): every request waits one gap after the previous one (the
    first too); gaps are exponential ("poisson": numpy's legacy generator seeded with ``seed``,
    as vLLM's ``np.random.seed``) or equal ("constant"); and the schedule is rescaled so that
    the last request leaves at ``count / rate``, as vLLM does, so a level offers its rate
    whatever the seed (16 raw exponential gaps can sum to anywhere in 0.5–1.5× that)."""
    import numpy as np

    if kind not in ARRIVALS:
        raise LabError(f"--arrivals must be one of {', '.join(ARRIVALS)}, got {kind!r}")
    if count <= 0:
        return []
    if kind == "poisson":
        gaps = np.random.RandomState(seed).gamma(1.0, 1.0 / rate, size=count)
    else:
        gaps = np.full(count, 1.0 / rate)
    times = np.cumsum(gaps)
    times *= (count / rate) / times[-1]
    return [float(t) for t in times]


# -- tokenizers -------------------------------------------------------------------------------
class LocalTokenizer:
    """A tokenizer folder (transformers) on this machine."""

    def __init__(self, path: str) -> None:
        from transformers import AutoTokenizer

        try:
            self.tok = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as err:
            raise LabError(f"cannot read a tokenizer from {path!r}: {str(err)[:120]}") from None
        self.special_tokens = len(self.tok("").input_ids)
        self.source = f"the tokenizer in {path}"

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False).input_ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)


class ServerTokenizer:
    """vLLM's ``POST /tokenize`` and ``/detokenize`` (beside ``/v1``, not under it)."""

    def __init__(self, sm: ServedModel) -> None:
        self.sm = sm
        self.root = sm.endpoint.base_url.removesuffix("/v1")
        self.special_tokens = len(self._post("tokenize", prompt="", add_special_tokens=True))
        self.source = f"the server's /tokenize ({sm.endpoint.host})"

    def _post(self, what: str, **body: Any) -> Any:
        from llmlab.served.validate import parse_detokenized, parse_token_ids

        endpoint = self.sm.endpoint
        data = endpoint.post_json(what, {"model": self.sm.model_id, **body}, beside_v1=True)
        if what == "tokenize":
            return parse_token_ids(data, endpoint.host)
        return parse_detokenized(data, endpoint.host, endpoint.redactor())

    def encode(self, text: str) -> list[int]:
        return list(self._post("tokenize", prompt=text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        return str(self._post("detokenize", tokens=list(ids)))


def served_tokenizer(sm: ServedModel, path: str | None = None) -> Tokenizer:
    """The served model's tokenizer (see the module's docstring for the order tried)."""
    if path:
        if path == "default":
            from llmlab.models.default import converted_dir

            path = str(converted_dir())
        return LocalTokenizer(path)
    try:
        return ServerTokenizer(sm)
    except (LabError, KeyError, TypeError, ValueError):
        pass
    server = getattr(sm, "server", None)
    if server is not None:
        folder = server.model_path
        if folder.endswith(".gguf"):  # llama.cpp on the default GGUF: its converted folder
            from llmlab.models.default import converted_dir

            folder = str(converted_dir())
        return LocalTokenizer(folder)
    raise LabError(
        f"exact --input-len needs the served model's tokenizer: {sm.endpoint.host} has no "
        "/tokenize endpoint; give --tokenizer FOLDER (a local copy of it)"
    )


def synthetic_prompt(tok: Tokenizer, length: int, rng: random.Random) -> str:
    """A prompt of random plain words that is exactly ``length`` tokens (before the server's
    special tokens) in ``tok``: over-generate, cut the ids, and check the decoded text
    re-tokenizes to the same count, trimming word by word where a cut merged two pieces."""
    words = [rng.choice(_WORDS) for _ in range(length + 8)]
    ids = tok.encode(" ".join(words))
    while len(ids) < length:  # a tokenizer with several tokens per word never gets here
        words += [rng.choice(_WORDS) for _ in range(length)]
        ids = tok.encode(" ".join(words))
    for cut in range(length, max(length - 8, 0), -1):
        text = tok.decode(ids[:cut])
        got = len(tok.encode(text))
        if got == length:
            return text
        if got < length:  # pad with single-token words until exact
            for word in _WORDS:
                candidate = text + " " + word
                if len(tok.encode(candidate)) == length:
                    return candidate
    raise LabError(f"could not make a prompt of exactly {length} tokens with {tok.source}")


def joined(tok: Tokenizer, prefix: str, length: int, rng: random.Random) -> str:
    """``prefix`` + a random tail, exactly ``length`` tokens in all (a word boundary can merge
    or split a token, so the tail is re-made a token shorter or longer until the sum is exact)."""
    if not prefix:
        return synthetic_prompt(tok, length, rng)
    base = len(tok.encode(prefix))
    tail_len = length - base
    for _ in range(4):
        text = f"{prefix} {synthetic_prompt(tok, tail_len, rng)}"
        got = len(tok.encode(text))
        if got == length:
            return text
        tail_len += length - got
        if tail_len < 1:
            break
    raise LabError(f"could not make a prompt of exactly {length} tokens with {tok.source}")


# -- multi-turn conversations -----------------------------------------------------------------
@dataclass
class Conversation:
    """One conversation: a system prefix shared by all conversations, then user turns; each
    turn is sent with every earlier turn and its answer (what prefix caching reuses)."""

    prefix: str
    turns: list[str]
    answers: list[str] = field(default_factory=list)

    def messages(self, turn: int) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.prefix}] if self.prefix else []
        for i in range(turn):
            msgs += [
                {"role": "user", "content": self.turns[i]},
                {"role": "assistant", "content": self.answers[i] if i < len(self.answers) else ""},
            ]
        return msgs + [{"role": "user", "content": self.turns[turn]}]


@dataclass
class Workload:
    """The requests of one level: single prompts (chat), synthetic prompts (completions, exact
    lengths) or conversations (chat, turn after turn)."""

    prompts: list[str]
    chat: bool = True
    input_len: int | None = None
    output_len: int | None = None
    ignore_eos: bool = False
    turns: int = 1
    prefix: str = ""
    seed: int = 0
    special_tokens: int = 0
    tokenizer_source: str | None = None

    def describe(self) -> str:
        parts = []
        if self.input_len is not None:
            parts.append(f"synthetic prompts of {self.input_len} tokens")
        else:
            parts.append(f"{len(self.prompts)} prompt{'s' * (len(self.prompts) != 1)}")
        if self.turns > 1:
            parts.append(f"{self.turns}-turn conversations sharing a prefix")
        if self.ignore_eos:
            parts.append("ignore_eos")
        return ", ".join(parts)


def build_workload(
    sm: ServedModel,
    prompts: Sequence[str] | None,
    *,
    requests: int,
    input_len: int | None = None,
    output_len: int | None = None,
    ignore_eos: bool = False,
    turns: int = 1,
    prefix_len: int = 0,
    seed: int = 0,
    tokenizer: str | None = None,
    raw: bool = False,
) -> Workload:
    """The prompts of a load test. ``raw``: given prompts go to ``/v1/completions`` as they are
    (no chat template), as synthetic single prompts always do."""
    check_lengths(input_len, output_len)
    if not 1 <= turns <= 64:
        raise LabError(f"--turns must be 1..64, got {turns}")
    if prefix_len and not 0 < prefix_len <= MAX_INPUT_LEN:
        raise LabError(f"--prefix-len must be 0..{MAX_INPUT_LEN:,} tokens, got {prefix_len:,}")
    rng = random.Random(seed)
    if input_len is None and not prefix_len:
        if prompts is None:
            from llmlab.measure.prompts import default_prompts

            prompts = default_prompts()
        prompts = [p for p in prompts if p.strip()]
        if not prompts:
            raise LabError("the prompt set is empty; give at least one prompt (one per line)")
        if raw and turns > 1:
            raise LabError("--raw sends single prompts; conversations need the chat endpoint")
        return Workload(
            list(prompts),
            chat=not raw,
            output_len=output_len,
            ignore_eos=ignore_eos,
            turns=turns,
            seed=seed,
        )
    if prompts:
        raise LabError("give either prompts or --input-len (synthetic prompts), not both")
    tok = served_tokenizer(sm, tokenizer)
    count = min(requests, 512) if turns == 1 else min(requests, 512) * turns
    prefix = synthetic_prompt(tok, prefix_len, rng) if prefix_len else ""
    if turns == 1:
        # One prompt per request, sent to /v1/completions so the server counts exactly its
        # tokens (vLLM bench's random dataset does the same): --input-len is the prompt tokens
        # the server reports, its special tokens (a BOS) included; a shared prefix is part of it.
        length = (input_len or prefix_len + 32) - tok.special_tokens
        if length - prefix_len < 1:
            raise LabError(
                f"--input-len {input_len} leaves no room after the {prefix_len}-token prefix and "
                f"{tok.special_tokens} special token(s); make it longer"
            )
        body = [joined(tok, prefix, length, rng) for _ in range(count)]
        prefix = ""
    else:  # conversations: --input-len is each user turn's own length (the template adds more)
        body = [synthetic_prompt(tok, input_len or 32, rng) for _ in range(count)]
    return Workload(
        body,
        # Conversations need the chat template; single synthetic prompts go to /v1/completions
        # so the server counts exactly the prompt's tokens (as vLLM bench's random dataset).
        chat=turns > 1,
        input_len=input_len,
        output_len=output_len,
        ignore_eos=ignore_eos,
        turns=turns,
        prefix=prefix,
        seed=seed,
        special_tokens=tok.special_tokens,
        tokenizer_source=tok.source,
    )
