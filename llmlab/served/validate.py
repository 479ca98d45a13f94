"""Everything a server sends is data, never instructions: the one place it is checked.

A served model's answers, model list, error bodies, log-probabilities and usage counts come from
a process llmlab does not control. Before any of it is used or shown it passes through here:

- **types and shapes**: each field the OpenAI API defines is checked to be what the API says
  (a list of choices, a text delta, a number for a log-probability); a chunk that is not gets
  one :class:`ServerDataError` line naming the field and what arrived instead;
- **ranges**: log-probabilities are finite and at most 0, top probabilities add up to at most 1,
  usage counts are whole numbers inside what the request allows (else refused, with a note);
- **sizes**: model ids, token strings, lists and the number of models are bounded;
- **what reaches a terminal**: escape sequences and other control characters become visible
  control pictures (``␛[2J``), lone surrogates become U+FFFD, one-line texts have no newline,
  and the secrets the client holds (the API key, a URL's password) are redacted from every text
  a server sends back, in whatever field it hides them.

The transport limits (a total deadline per request, the client's own token limit, bytes per
line) live in :mod:`llmlab.served.client` and :func:`llmlab.served.generate.stream_request`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmlab.errors import LabError

#: Bounds on what one server answer may hold (far above any real engine's, far below harm).
MAX_MODEL_ID = 256  # characters of a model id llmlab will send back or show
MAX_MODELS = 100_000  # entries of a /models listing
MAX_TOKEN_TEXT = 4096  # characters of one token string in a log-probability entry
MAX_TOP = 100  # top log-probability entries per position (the API allows 20)
MAX_SHOWN = 200  # characters of server text inside one of our error lines
MAX_PROMPT_TOKENS = 100_000_000  # no engine's context reaches 10^8 tokens
#: Log-probabilities a little above 0 are rounding (a log-softmax is <= 0 in exact arithmetic).
LOGPROB_SLACK = 1e-3

# C0 controls except tab/newline, DEL, C1 controls; and Unicode's bidirectional overrides and
# isolates, which reorder what a terminal shows (the "Trojan source" trick).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_WHITESPACE = re.compile(r"\s+")


class ServerDataError(LabError):
    """A server sent something the OpenAI API does not allow; the message names it."""


def _picture(match: re.Match[str]) -> str:
    """A control character made visible and inert: ESC -> ␛ (Unicode's control pictures)."""
    code = ord(match[0])
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "\u2421"
    return "\ufffd"  # C1 controls and bidi overrides have no picture


def clean_text(text: str) -> str:
    """Answer text as it may be printed: newlines and tabs kept, ``\\r\\n`` made ``\\n``, every
    other control character a visible picture, lone surrogates U+FFFD."""
    if text.isascii() and text.isprintable():  # the common case, ~20x faster than the regexes
        return text
    text = text.replace("\r\n", "\n")
    return _SURROGATE.sub("\ufffd", _CONTROL.sub(_picture, text))


def printable(text: Any, limit: int = MAX_SHOWN) -> str:
    """Any text as one printable line of at most ``limit`` characters."""
    text = _WHITESPACE.sub(" ", clean_text(str(text))).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def has_controls(text: str) -> bool:
    return bool(_CONTROL.search(text) or _SURROGATE.search(text) or "\n" in text or "\t" in text)


def listing(items: Sequence[str], limit: int = 10, width: int = 300) -> str:
    """``a, b, c`` for a few items; for many, the first that fit ``width`` and a count."""
    shown: list[str] = []
    for item in items[:limit]:
        text = printable(repr(item) if has_controls(item) else item, 60)
        if shown and sum(len(s) + 2 for s in shown) + len(text) > width:
            break
        shown.append(text)
    more = len(items) - len(shown)
    return ", ".join(shown) + (f" and {more:,} more" if more > 0 else "")


class Redactor:
    """Replaces the secrets the client holds wherever a server echoes them back."""

    #: Shorter secrets are not redacted: replacing every "ab" would mangle all text.
    MIN_SECRET = 4
    MARK = "[redacted]"

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.secrets = sorted(
            {s for s in secrets if s and len(s) >= self.MIN_SECRET}, key=len, reverse=True
        )

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, self.MARK)
        return text

    def pieces(self, pieces: list[str]) -> list[str]:
        """Redact a secret spread over several streamed pieces, keeping one piece per token
        (the first piece of a hidden span carries the mark, the others lose their part)."""
        joined = "".join(pieces)
        spans = [
            (m.start(), m.end())
            for secret in self.secrets
            for m in re.finditer(re.escape(secret), joined)
        ]
        if not spans:
            return pieces
        hidden = [False] * len(joined)
        for a, b in spans:
            hidden[a:b] = [True] * (b - a)
        out, pos = [], 0
        for piece in pieces:
            kept = []
            for i, ch in enumerate(piece, start=pos):
                if not hidden[i]:
                    kept.append(ch)
                elif i == 0 or not hidden[i - 1]:
                    kept.append(self.MARK)
            out.append("".join(kept))
            pos += len(piece)
        return out

    def unsettled(self, text: str) -> bool:
        """Whether ``text`` ends with the start of a secret (wait for more before showing it)."""
        return any(
            text.endswith(secret[:n]) for secret in self.secrets for n in range(1, len(secret))
        )


# -- numbers --------------------------------------------------------------------------------
def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"a string ({printable(repr(value), 40)})"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int | float):
        return f"the number {value!r}"[:60]
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def seconds(value: Any, what: str, *, maximum: float = 7 * 24 * 3600) -> float:
    """A user's time limit: a finite number of seconds above 0 (``nan`` and ``inf`` are not)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LabError(f"{what} takes seconds, e.g. 60; got {printable(repr(value), 40)}") from None
    if not math.isfinite(number) or number <= 0 or number > maximum:
        raise LabError(
            f"{what} must be a finite number of seconds in (0, {maximum:g}], got {value}"
        )
    return number


# -- model listings -------------------------------------------------------------------------
def parse_models(data: Any, host: str, redact: Redactor) -> list[str]:
    """The model ids of a ``/models`` answer (``{"data": [{"id": ...}, ...]}``); a secret a
    server lists as a model is redacted like any other text it sends."""
    where = f"the server at {host} answered /models with"
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        shape = _kind(data) if not isinstance(data, dict) else f"data {_kind(data.get('data'))}"
        raise ServerDataError(
            f"{where} {shape}, not an OpenAI model list ({{'data': [{{'id': ...}}]}})"
        )
    entries = data["data"]
    if len(entries) > MAX_MODELS:
        raise ServerDataError(f"{where} {len(entries):,} models (more than {MAX_MODELS:,})")
    ids = []
    for i, entry in enumerate(entries):
        model_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(model_id, str) or not model_id:
            got = _kind(model_id) if isinstance(entry, dict) else _kind(entry)
            raise ServerDataError(f"{where} entry {i} whose id is {got}, not a model name")
        ids.append(redact(model_id))
    return ids


def check_model_id(model_id: str, host: str) -> str:
    """A model id llmlab will send back and print: no control characters, bounded length."""
    if has_controls(model_id) or len(model_id) > MAX_MODEL_ID or not model_id.strip():
        raise ServerDataError(
            f"the server at {host} names its model {printable(repr(model_id), 80)}: control "
            f"characters, blank or longer than {MAX_MODEL_ID} characters; llmlab will not use it"
        )
    return model_id


def parse_token_ids(data: Any, host: str) -> list[int]:
    """vLLM's ``/tokenize`` answer: ``{"tokens": [ids]}``, whole numbers >= 0."""
    ids = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 2**31 for i in ids
    ):
        got = _kind(ids) if isinstance(data, dict) else _kind(data)
        raise ServerDataError(f"the server at {host} answered /tokenize with tokens {got}")
    return ids


def parse_detokenized(data: Any, host: str, redact: Redactor) -> str:
    """vLLM's ``/detokenize`` answer: ``{"prompt": text}``."""
    text = data.get("prompt") if isinstance(data, dict) else None
    if not isinstance(text, str):
        got = _kind(text) if isinstance(data, dict) else _kind(data)
        raise ServerDataError(f"the server at {host} answered /detokenize with prompt {got}")
    return clean_text(redact(text))


# -- streamed chunks ------------------------------------------------------------------------
@dataclass
class Token:
    """One output token (or one text piece, where the server sends no log-probabilities)."""

    text: str
    logprob: float | None = None
    top: dict[str, float] = field(default_factory=dict)


@dataclass
class Chunk:
    """What one streamed chunk holds for the first choice, checked."""

    tokens: list[Token] = field(default_factory=list)
    exact: bool = False  # the tokens are the server's own (log-probability entries), one each
    finish_reason: str | None = None
    usage: Any = None  # checked by :func:`check_usage`, which knows what was asked


class _Checker:
    """Walks one chunk, naming the path of whatever is wrong (``choices[0].delta.content``)."""

    def __init__(self, host: str, redact: Redactor) -> None:
        self.host, self.redact = host, redact

    def fail(self, path: str, expected: str, value: Any) -> ServerDataError:
        got = _kind(self.redact(value) if isinstance(value, str) else value)
        return ServerDataError(
            f"the server at {self.host} sent a chunk whose {path} is {got}, expected {expected}"
        )

    def text(self, value: Any, path: str, *, limit: int | None = None) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(path, "text", value)
        if limit is not None and len(value) > limit:
            raise self.fail(path, f"at most {limit} characters", f"{len(value)} characters")
        return clean_text(self.redact(value))

    def logprob(self, value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, "a log-probability (a number <= 0)", value)
        number = float(value)
        if math.isnan(number) or number > LOGPROB_SLACK:
            raise self.fail(path, "a log-probability (a number <= 0)", value)
        return min(number, 0.0)

    def top(self, pairs: Iterable[tuple[Any, Any]], path: str) -> dict[str, float]:
        top: dict[str, float] = {}
        for i, (token, lp) in enumerate(pairs):
            if i >= MAX_TOP:
                raise self.fail(path, f"at most {MAX_TOP} entries", "a longer list")
            text = self.text(token, f"{path}[{i}].token", limit=MAX_TOKEN_TEXT)
            value = self.logprob(lp, f"{path}[{i}].logprob")
            if text is None:
                raise self.fail(f"{path}[{i}].token", "text", None)
            if value > -math.inf:  # -inf: probability 0, nothing to show
                top[text] = max(value, top.get(text, -math.inf))
        mass = sum(math.exp(v) for v in top.values())
        if mass > 1 + LOGPROB_SLACK:
            raise ServerDataError(
                f"the server at {self.host} sent top log-probabilities at {path} whose "
                f"probabilities add up to {mass:.3f}, more than 1"
            )
        return top

    def chosen(self, value: Any, path: str) -> float | None:
        if value is None:
            return None
        number = self.logprob(value, path)
        if number == -math.inf:
            raise self.fail(path, "a finite log-probability for a token it chose", value)
        return number

    def chat_logprobs(self, lp: dict[str, Any], path: str) -> list[Token]:
        content = lp.get("content")
        if content is None:
            return []
        if not isinstance(content, list):
            raise self.fail(f"{path}.content", "a list", content)
        tokens = []
        for i, item in enumerate(content):
            where = f"{path}.content[{i}]"
            if not isinstance(item, dict):
                raise self.fail(where, "an object", item)
            text = self.text(item.get("token"), f"{where}.token", limit=MAX_TOKEN_TEXT)
            entries = item.get("top_logprobs") or []
            if not isinstance(entries, list):
                raise self.fail(f"{where}.top_logprobs", "a list", entries)
            pairs = []
            for j, entry in enumerate(entries):
                if not isinstance(entry, dict):
                    raise self.fail(f"{where}.top_logprobs[{j}]", "an object", entry)
                pairs.append((entry.get("token"), entry.get("logprob")))
            top = self.top(pairs, f"{where}.top_logprobs")
            tokens.append(
                Token(text or "", self.chosen(item.get("logprob"), f"{where}.logprob"), top)
            )
        return tokens

    def completion_logprobs(self, lp: dict[str, Any], path: str) -> list[Token]:
        names = ("tokens", "token_logprobs", "top_logprobs")
        tokens, chosen, tops = (lp.get(name) for name in names)
        if tokens is None:
            return []
        n = len(tokens) if isinstance(tokens, list) else -1
        for name, value in zip(names, (tokens, chosen, tops)):
            if value is not None and (not isinstance(value, list) or len(value) != n):
                raise self.fail(f"{path}.{name}", f"a list as long as {path}.tokens", value)
        out = []
        for i, token in enumerate(tokens):
            text = self.text(token, f"{path}.tokens[{i}]", limit=MAX_TOKEN_TEXT)
            lp_i = self.chosen(chosen[i] if chosen else None, f"{path}.token_logprobs[{i}]")
            entry = tops[i] if tops else None
            if entry is not None and not isinstance(entry, dict):
                raise self.fail(f"{path}.top_logprobs[{i}]", "an object (token: logprob)", entry)
            top = self.top((entry or {}).items(), f"{path}.top_logprobs[{i}]")
            out.append(Token(text or "", lp_i, top))
        return out

    def choice(self, choice: Any, path: str) -> Chunk:
        if not isinstance(choice, dict):
            raise self.fail(path, "an object", choice)
        finish = self.text(choice.get("finish_reason"), f"{path}.finish_reason", limit=64)
        delta = choice.get("delta")
        if delta is not None and not isinstance(delta, dict):
            raise self.fail(f"{path}.delta", "an object", delta)
        if delta is not None:
            text = self.text(delta.get("content"), f"{path}.delta.content")
        else:
            text = self.text(choice.get("text"), f"{path}.text")
        lp = choice.get("logprobs")
        if lp is not None and not isinstance(lp, dict):
            raise self.fail(f"{path}.logprobs", "an object", lp)
        tokens: list[Token] = []
        if lp and "content" in lp:  # the chat shape
            tokens = self.chat_logprobs(lp, f"{path}.logprobs")
        elif lp and "tokens" in lp:  # the completions shape
            tokens = self.completion_logprobs(lp, f"{path}.logprobs")
        if tokens:
            return Chunk(tokens, True, finish)
        return Chunk([Token(text)] if text else [], False, finish)


def parse_chunk(data: Any, host: str, redact: Redactor) -> Chunk:
    """One streamed chunk, checked: the first choice's tokens, finish reason and usage."""
    check = _Checker(host, redact)
    if not isinstance(data, dict):
        raise check.fail("body", "an object", data)
    if "error" in data or data.get("object") == "error":
        raise ServerDataError(
            f"the server at {host} reported an error: {error_message(data, redact)}"
        )
    choices = data.get("choices")
    if choices is not None and not isinstance(choices, list):
        raise check.fail("choices", "a list", choices)
    chunk = Chunk(usage=data.get("usage"))
    for i, choice in enumerate(choices or []):
        index = choice.get("index", 0) if isinstance(choice, dict) else 0
        if isinstance(index, bool) or not isinstance(index, int):
            raise check.fail(f"choices[{i}].index", "a whole number", index)
        if index != 0:
            continue  # another sequence of an n>1 request; llmlab sends n=1
        part = check.choice(choice, f"choices[{i}]")
        chunk.tokens += part.tokens
        chunk.exact = part.exact
        chunk.finish_reason = part.finish_reason or chunk.finish_reason
    return chunk


# -- usage ----------------------------------------------------------------------------------
@dataclass
class Usage:
    """A usage report that passed :func:`check_usage`."""

    prompt_tokens: int | None
    completion_tokens: int | None


def check_usage(
    usage: Any, *, max_tokens: int, least_tokens: int, prompt_chars: int
) -> tuple[Usage | None, str | None]:
    """The server's usage report if it is possible for this request, else ``(None, why)``.

    Possible means whole numbers, none negative, at most the ``max_tokens`` asked for, at
    least one token per chunk that carried text, and a prompt count no tokenizer exceeds (one
    token per UTF-8 byte, plus a chat template)."""
    if usage is None:
        return None, None
    if not isinstance(usage, dict):
        return None, f"usage was {_kind(usage)}, not an object"
    counts: dict[str, int | None] = {}
    for name in ("prompt_tokens", "completion_tokens"):
        value = usage.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            return None, f"{name} was {_kind(value)}, not a whole number"
        if value is not None and value < 0:
            return None, f"{name} was {value}, a negative count"
        counts[name] = value
    done, prompt = counts["completion_tokens"], counts["prompt_tokens"]
    if done is not None and done > max_tokens:
        return None, f"completion_tokens was {done:,}, more than the {max_tokens} asked for"
    if done is not None and done < least_tokens:
        return None, f"completion_tokens was {done}, fewer than the {least_tokens} text chunks"
    limit = min(MAX_PROMPT_TOKENS, 4 * prompt_chars + 100_000)
    if prompt is not None and prompt > limit:
        return (
            None,
            f"prompt_tokens was {prompt:,}, more than a {prompt_chars}-character prompt holds",
        )
    return Usage(prompt, done), None


# -- error bodies ---------------------------------------------------------------------------
def error_message(data: Any, redact: Redactor) -> str:
    """The message out of the shapes servers use: ``{"error": {"message"}}``, ``{"detail"}``,
    vLLM's ``{"object": "error", "message"}``, or plain text; one line, bounded."""
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message", data)))
        if isinstance(err, dict):
            err = err.get("message", err)
        text = str(err)
    else:
        text = str(data)
    return printable(redact(text))  # redacted before it is cut: no half key survives
