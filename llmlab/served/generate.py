"""Generation, chat and the next-token view against a served model.

Every figure is measured on the client from the streamed chunks, the way vLLM's benchmark and
GuideLLM do: TTFT from sending the request to the first chunk with text, ITL between chunks,
E2E to the last chunk; token counts come from the server's ``usage`` report when it sends one.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmlab.errors import LabError
from llmlab.generation.result import Candidate, GenerationResult, GenerationStats
from llmlab.generation.settings import GenerationSettings
from llmlab.served.client import StreamTimeout
from llmlab.served.validate import Redactor, Usage, check_usage, parse_chunk

if TYPE_CHECKING:
    from llmlab.generation.engine import Messages, TokenCallback
    from llmlab.generation.next_token import NextTokenDistribution
    from llmlab.served.client import Endpoint
    from llmlab.served.model import ServedModel

#: Top log-probabilities asked for: 20 is the OpenAI API's cap and vLLM's default limit.
TOP_LOGPROBS = 20
#: Characters per token on average at most: the longest vocabulary entries are a few hundred
#: characters; more is a server streaming text past what was asked.
MAX_CHARS_PER_TOKEN = 1024
#: Chunks without text (role, finish, usage) a stream may hold beyond one per token.
TEXTLESS_SLACK = 16
#: Said under the first answer a session gets from a server: its figures may hold the server's
#: one-off start-up work (vLLM's first request: TTFT 24.6 s; the next ones 0.2 s).
COLD_NOTE = (
    "first request to this server from this session: it may have been cold (one-off start-up "
    "work in its TTFT); run again for warm figures"
)
#: After the last token asked for, the seconds left for the usage report and [DONE].
AFTER_LIMIT_S = 2.0


@dataclass
class Streamed:
    """One streamed request: per output token its text, arrival time and log-probabilities.

    Everything here passed :mod:`llmlab.served.validate`: text is printable, secrets are
    redacted, log-probabilities are finite, ``usage`` is a possible report or None."""

    pieces: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # seconds since the request was sent
    logprobs: list[float | None] = field(default_factory=list)  # of the chosen token
    top: list[dict[str, float]] = field(default_factory=list)  # per token: piece -> logprob
    chunk_times: list[float] = field(default_factory=list)  # every chunk that carried text
    usage: Usage | None = None
    usage_note: str | None = None  # why the server's usage report was refused
    overrun: str | None = None  # how the server went past the request and where it was stopped
    finish_reason: str | None = None
    e2e_s: float = 0.0
    interrupted: bool = False
    cold: bool = False  # the first request this session sent to this server

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def ttft_s(self) -> float | None:
        return self.chunk_times[0] if self.chunk_times else None

    @property
    def output_tokens(self) -> int:
        """The server's count when it reports usage (a chunk may carry several tokens)."""
        if self.usage and self.usage.completion_tokens is not None:
            return self.usage.completion_tokens
        return len(self.pieces)

    @property
    def prompt_tokens(self) -> int | None:
        return self.usage.prompt_tokens if self.usage else None

    @property
    def has_logprobs(self) -> bool:
        return any(lp is not None for lp in self.logprobs)

    @property
    def notes(self) -> list[str]:
        """What went wrong on the server's side but left the answer usable."""
        notes = [self.overrun] if self.overrun else []
        if self.usage_note:
            notes.append(f"usage report refused: {self.usage_note}")
        return notes


def request_body(
    model_id: str,
    prompt: str | Messages,
    settings: GenerationSettings,
    *,
    chat: bool,
    logprobs: int = 0,
) -> tuple[str, dict[str, Any]]:
    """The endpoint path and JSON body for one streamed request."""
    body: dict[str, Any] = {
        "model": model_id,
        "max_tokens": settings.max_new_tokens,
        "stream_options": {"include_usage": True},
    }
    if settings.do_sample:
        body["temperature"] = settings.temperature if settings.temperature is not None else 1.0
        if settings.top_p is not None:
            body["top_p"] = settings.top_p
        if settings.top_k is not None:
            body["top_k"] = settings.top_k  # an extension vLLM, SGLang and llama.cpp accept
        if settings.seed is not None:
            body["seed"] = settings.seed
    else:
        body["temperature"] = 0.0
    if chat:
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        body["messages"] = messages
        if logprobs:
            body |= {"logprobs": True, "top_logprobs": logprobs}
        return "chat/completions", body
    body["prompt"] = prompt
    if logprobs:
        body["logprobs"] = logprobs
    return "completions", body


# Servers this session has had an answer from, by endpoint (weakly: a dropped endpoint is
# forgotten). A server's first request pays one-off costs (vLLM: 24.6 s TTFT, then 0.2 s).
_answered: dict[int, weakref.ref] = {}


def _has_answered(endpoint: Endpoint) -> bool:
    ref = _answered.get(id(endpoint))
    return ref is not None and ref() is endpoint


def _answered_now(endpoint: Endpoint) -> None:
    key = id(endpoint)
    _answered[key] = weakref.ref(endpoint, lambda _ref: _answered.pop(key, None))


def stream_request(
    endpoint: Endpoint,
    path: str,
    body: dict[str, Any],
    *,
    on_piece: Any = None,
    stop: threading.Event | None = None,
) -> Streamed:
    """Send one streamed request and collect what arrives, checked. Ctrl-C keeps the partial
    answer. Every request made through here ends: at the server's end of stream, at the
    client's own limit of ``body["max_tokens"]`` tokens (a server that streams on is cut off
    there, and the answer says so), or at the endpoint's idle timeout or total deadline."""
    max_tokens = int(body["max_tokens"])
    out = Streamed(cold=not _has_answered(endpoint))
    limits = endpoint.limits(stop)
    start = time.perf_counter()
    usage: Any = None
    least_tokens = 0  # what the chunks prove the server produced, for checking its usage count
    textless = 0
    chars = 0
    try:
        with contextlib.closing(endpoint.stream(path, body, stop=stop, limits=limits)) as events:
            for event in events:
                chunk = parse_chunk(event.data, endpoint.host, limits.redact)
                if chunk.usage is not None:
                    usage = chunk.usage
                out.finish_reason = chunk.finish_reason or out.finish_reason
                if not chunk.tokens:
                    textless += 1
                    if textless > max_tokens + TEXTLESS_SLACK:
                        out.overrun = (
                            f"the server sent {textless} chunks without text; the client "
                            "stopped the stream"
                        )
                        break
                    continue
                room = max_tokens - len(out.pieces)
                tokens = chunk.tokens[: max(room, 0)]
                if tokens:
                    least_tokens += len(tokens) if chunk.exact else 1
                    out.chunk_times.append(event.t)
                    for token in tokens:
                        out.pieces.append(token.text)
                        out.times.append(event.t)
                        out.logprobs.append(token.logprob)
                        out.top.append(token.top)
                        chars += len(token.text)
                if len(chunk.tokens) > room:
                    out.overrun = (
                        f"the server streamed past the {max_tokens} tokens asked for; the "
                        f"client stopped at {max_tokens}"
                    )
                elif chars > max_tokens * MAX_CHARS_PER_TOKEN:
                    out.overrun = (
                        f"the server sent {chars:,} characters for {max_tokens} tokens; the "
                        "client stopped there"
                    )
                if len(out.pieces) >= max_tokens:
                    limits.shorten_idle(AFTER_LIMIT_S)  # only the usage report and [DONE] remain
                if tokens and on_piece is not None:
                    on_piece(out, event.t)
                if out.overrun:
                    break
    except StreamTimeout:
        if len(out.pieces) < max_tokens:
            raise
        out.overrun = (
            f"the server did not end the stream after the {max_tokens} tokens asked for; the "
            "client stopped it"
        )
    except KeyboardInterrupt:
        out.interrupted = True
    out.e2e_s = time.perf_counter() - start
    if out.chunk_times:
        _answered_now(endpoint)
    if out.overrun:
        out.finish_reason = "length"
        usage = None  # it counted tokens the client never kept
    out.pieces = limits.redact.pieces(out.pieces)  # a secret spread over several pieces
    out.usage, out.usage_note = check_usage(
        usage,
        max_tokens=max_tokens,
        least_tokens=least_tokens,
        prompt_chars=len(json.dumps(body.get("messages", body.get("prompt", "")))),
    )
    return out


def shown_pieces(pieces: list[str], redact: Redactor) -> list[str]:
    """The pieces a live view may show now: secrets redacted, and none that ends with what
    could be the start of a secret (the next piece decides)."""
    if not redact.secrets:
        return pieces
    pieces = redact.pieces(pieces)
    k = len(pieces)
    while k and redact.unsettled("".join(pieces[:k])):
        k -= 1
    return pieces[:k]


def served_generate(
    sm: ServedModel,
    prompt: str | Messages,
    settings: GenerationSettings | None = None,
    *,
    raw: bool = False,
    on_token: TokenCallback | None = None,
    logprobs: int = 0,
    stop: threading.Event | None = None,
) -> GenerationResult:
    """Generate from a served model: streamed, measured on the client.

    ``raw`` sends the text to ``/completions`` as is; otherwise ``/chat/completions`` applies
    the server's chat template. Several candidates (``best_of``, ``num_return_sequences``) are
    separate requests; best-of scores them by the server's log-probabilities.
    """
    settings = settings or GenerationSettings()
    if isinstance(prompt, str) and not prompt.strip():
        raise LabError("the prompt is empty")
    if raw and isinstance(prompt, list):
        raise LabError("a chat turn needs the chat endpoint; drop --raw")
    scoring = settings.best_of > 1
    want = max(logprobs, 1 if scoring else 0)
    path, body = request_body(sm.model_id, prompt, settings, chat=not raw, logprobs=want)

    runs: list[Streamed] = []
    redact = sm.endpoint.redactor()
    for i in range(settings.n_candidates):
        if settings.seed is not None and settings.n_candidates > 1:
            body["seed"] = settings.seed + i  # the same seed would repeat the same sample
        on_piece = None
        if on_token is not None and settings.n_candidates == 1:

            def on_piece(out: Streamed, t: float) -> None:
                pieces = shown_pieces(out.pieces, redact)
                on_token([sm.tokenizer.id_of(p) for p in pieces], t)

        run = stream_request(sm.endpoint, path, body, on_piece=on_piece, stop=stop)
        runs.append(run)
        if run.interrupted:
            break
    if scoring and not runs[-1].interrupted and not all(r.has_logprobs for r in runs):
        raise LabError(
            f"best-of needs log-probabilities and the server at {sm.endpoint.host} sent none; "
            "use --num-return-sequences instead"
        )
    candidates = [
        Candidate(
            r.text,
            [sm.tokenizer.id_of(p) for p in r.pieces],
            statistics.fmean(v for v in r.logprobs if v is not None) if r.has_logprobs else None,
        )
        for r in runs
    ]
    chosen = 0
    if scoring and not runs[-1].interrupted:
        chosen = max(range(len(candidates)), key=lambda i: candidates[i].mean_logprob or -math.inf)
    best = runs[chosen]
    stats = stats_of(sm, best)
    text_prompt = prompt if isinstance(prompt, str) else prompt[-1]["content"]
    return GenerationResult(
        model=sm.name,
        prompt=text_prompt,
        text=best.text,
        token_ids=candidates[chosen].token_ids,
        stats=stats,
        settings=settings,
        candidates=candidates if len(candidates) > 1 else [],
        chosen=chosen,
    )


def stats_of(sm: ServedModel, run: Streamed) -> GenerationStats:
    """The footer's figures. Memory is the server's business: left out, not shown as zero."""
    if run.interrupted:
        stopped = "interrupted"
    else:
        stopped = {"stop": "eos", "length": "length"}.get(run.finish_reason or "", "eos")
    gaps = [b - a for a, b in zip(run.chunk_times, run.chunk_times[1:])]
    extra: dict[str, Any] = {}
    if gaps:
        extra["ITL p50"] = f"{statistics.median(gaps) * 1000:.0f} ms"
    extra["E2E"] = f"{run.e2e_s:.2f} s"
    if run.usage_note:
        extra["tokens"] = f"counted from chunks (usage report refused: {run.usage_note})"
    elif run.usage is None:
        extra["tokens"] = "counted from chunks (the server sent no usage report)"
    if run.overrun:
        extra["note"] = run.overrun
    if run.cold:
        extra["cold"] = COLD_NOTE
    extra["server"] = sm.endpoint.host
    return GenerationStats(
        prompt_tokens=run.prompt_tokens or 0,
        new_tokens=run.output_tokens,
        ttft_s=run.ttft_s,
        total_s=run.e2e_s,
        token_times_s=list(run.times),
        peak_memory_bytes=0,
        peak_memory_kind="",
        device="served",
        dtype="",
        stopped=stopped,
        extra=extra,
    )


def served_next_token(
    sm: ServedModel,
    prompt: str,
    *,
    raw: bool = True,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    shown: int = 20,
) -> NextTokenDistribution:
    """The next-token distribution from the server's top log-probabilities (top 20 at most).

    The rest of the vocabulary is one lump holding the remaining probability: exact at
    temperature 1, an approximation at other temperatures (the view says so).
    """
    from llmlab.generation.next_token import NextTokenDistribution

    if not prompt.strip():
        raise LabError("the prompt is empty")
    settings = GenerationSettings(max_new_tokens=1)
    path, body = request_body(sm.model_id, prompt, settings, chat=not raw, logprobs=TOP_LOGPROBS)
    run = stream_request(sm.endpoint, path, body)
    top = run.top[0] if run.top else {}
    if not top:
        raise LabError(
            f"the server at {sm.endpoint.host} returned no top log-probabilities, so %llm next "
            "cannot show a distribution (vLLM, SGLang and llama.cpp's server return them)"
        )
    ranked = sorted(top.items(), key=lambda kv: kv[1], reverse=True)
    tokens = [t for t, _ in ranked]
    logprobs = [float(lp) for _, lp in ranked]
    rest = 1.0 - sum(math.exp(lp) for lp in logprobs)
    centers, counts = ([math.log(rest)], [1]) if rest > 1e-9 else ([], [])
    return NextTokenDistribution(
        model=sm.name,
        prompt=prompt,
        token_ids=[sm.tokenizer.id_of(t) for t in tokens],
        tokens=tokens,
        logits=logprobs,
        tail_centers=centers,
        tail_counts=counts,
        vocab_size=len(tokens) + len(counts),
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        shown=min(shown, len(tokens)),
        note=(
            f"served: the server's top {len(tokens)} log-probabilities; the other tokens are one "
            f"lump of p={max(rest, 0):.3f} (exact at T=1, approximate at other temperatures)"
        ),
    )
