"""Talk to an OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp, Ollama): list its models
and stream completions, timestamping every streamed event on arrival.

Why httpx and a few lines of SSE parsing rather than the ``openai`` package: httpx is already
installed with transformers' hub client, it gives us each streamed line the moment it arrives
(the clock for TTFT and ITL), and it exposes engine-specific chunk fields (llama.cpp's and vLLM's
logprobs, ``usage`` on the last chunk) without a typed model dropping them. The openai client
would also retry failed requests by default, which a load test must never do silently.
The OpenAI stream is plain server-sent events: ``data: {json}`` lines ending with
``data: [DONE]``; nothing more of SSE is used by these servers.

Every request runs under :class:`Limits`: a total deadline, an idle limit that only a complete
event resets (a server dripping one byte a second, or sending keep-alive comments, does not),
a stop flag another thread may set, and bounded line and body sizes. httpx's timeouts are per
socket read, so the limits are enforced one layer down, in the socket reads themselves
(:class:`_GuardedBackend`): a read never blocks past the request's deadline, and wakes every
``POLL_S`` to see the stop flag (Ctrl-C in a load test ends every worker at once).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse, urlunparse

from llmlab.errors import LabError
from llmlab.served.validate import (
    Redactor,
    error_message,
    has_controls,
    parse_models,
    printable,
    seconds,
)

#: Seconds to wait for the server to accept a connection.
CONNECT_TIMEOUT_S = 5.0
#: Seconds without a complete event (the first included) before a request fails (--timeout).
DEFAULT_TIMEOUT_S = 60.0
#: Seconds one request may take in all (--deadline; at least --timeout unless given): streams
#: that never end, slow-loris.
DEFAULT_DEADLINE_S = 600.0
#: A blocked socket read wakes this often to look at the stop flag and the clocks.
POLL_S = 0.2
#: Bytes of one SSE line, of a /models answer and of an error body read at most.
MAX_LINE_BYTES = 1 << 20
MAX_BODY_BYTES = 32 << 20
MAX_ERROR_BYTES = 64 << 10


@dataclass
class Event:
    """One streamed chunk: its arrival time (seconds since the request was sent) and body."""

    t: float
    data: Any


class StreamTimeout(LabError):
    """A request ran past one of its limits; ``reason`` is "idle" or "deadline"."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class Limits:
    """The clocks of one request, read by every socket read made on its behalf."""

    def __init__(
        self,
        idle_s: float,
        deadline_s: float,
        stop: threading.Event | None = None,
        redact: Redactor | None = None,
    ) -> None:
        self.redact = redact or Redactor()  # applied to every line and body as it is read
        self.idle_s, self.deadline_s = idle_s, deadline_s
        self.stop = stop
        self.expired: str | None = None  # "idle", "deadline" or "stopped", once one fires
        self.begin()

    def begin(self) -> None:
        """Start the clocks: when the request is sent (not while httpx is imported)."""
        self.start = time.perf_counter()
        self.deadline = self.start + self.deadline_s
        self.last_event = self.start
        self.bytes_since_event = 0

    def progress(self) -> None:
        """A complete event arrived: the idle clock starts again."""
        self.last_event = time.perf_counter()
        self.bytes_since_event = 0

    def shorten_idle(self, idle_s: float) -> None:
        self.idle_s = min(self.idle_s, idle_s)

    def left(self) -> float:
        """Seconds until the first limit fires; 0 (and ``expired`` set) once one has."""
        if self.stop is not None and self.stop.is_set():
            self.expired = "stopped"
            return 0.0
        now = time.perf_counter()
        idle_left = self.last_event + self.idle_s - now
        deadline_left = self.deadline - now
        if min(idle_left, deadline_left) <= 0:
            self.expired = "deadline" if deadline_left <= idle_left else "idle"
            return 0.0
        return min(idle_left, deadline_left)


_current = threading.local()  # .limits: the Limits of the request this thread is making


class _GuardedStream:
    """A socket stream whose reads and writes obey the current request's :class:`Limits`."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        import httpcore

        limits: Limits | None = getattr(_current, "limits", None)
        if limits is None:
            return self._inner.read(max_bytes, timeout)
        while True:
            left = limits.left()
            if left <= 0:
                raise httpcore.ReadTimeout(f"request limit reached ({limits.expired})")
            try:
                data = self._inner.read(max_bytes, min(left, POLL_S))
            except httpcore.ReadTimeout:
                continue  # only our poll slice ran out; the clocks decide
            limits.bytes_since_event += len(data)
            return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        import httpcore

        limits: Limits | None = getattr(_current, "limits", None)
        if limits is not None:
            left = limits.left()
            if left <= 0:
                raise httpcore.WriteTimeout(f"request limit reached ({limits.expired})")
            timeout = left if timeout is None else min(timeout, left)
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: Any = None, timeout: Any = None) -> Any:
        return _GuardedStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend:
    """httpcore's network backend with every stream guarded; connects clamped to the deadline."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, **kw: Any) -> Any:
        limits: Limits | None = getattr(_current, "limits", None)
        if limits is not None and timeout is not None:
            timeout = max(min(timeout, limits.left()), 0.001)
        return _GuardedStream(self._inner.connect_tcp(host, port, timeout, **kw))

    def connect_unix_socket(self, path: str, timeout: float | None = None, **kw: Any) -> Any:
        return _GuardedStream(self._inner.connect_unix_socket(path, timeout, **kw))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _guard(client: Any) -> Any:
    """Put :class:`_GuardedBackend` under every connection pool of an httpx client. httpx has
    no public hook for the socket layer (httpcore's pools take ``network_backend``, but httpx
    builds the pools itself), hence the private attributes; the deadline tests fail loudly if
    a release renames them."""
    transports = [client._transport, *client._mounts.values()]
    pools = [t._pool for t in transports if t is not None and hasattr(t, "_pool")]
    if not pools or not all(hasattr(p, "_network_backend") for p in pools):
        raise RuntimeError("httpx/httpcore changed: cannot enforce request deadlines")
    for pool in pools:
        if not isinstance(pool._network_backend, _GuardedBackend):
            pool._network_backend = _GuardedBackend(pool._network_backend)
    return client


def _key_problem(key: str) -> str | None:
    """What makes a key unusable in an HTTP header, said without showing the key."""
    if not key:
        return "is empty"
    if len(key) > 4096:
        return "is longer than 4096 characters"
    if any(not 0x21 <= ord(ch) <= 0x7E for ch in key):
        return "holds spaces, control or non-ASCII characters (an API key is printable ASCII)"
    return None


@dataclass
class Endpoint:
    """An OpenAI-compatible base URL (``http://host:port/v1``) and how to authenticate.

    The API key is read from the environment variable ``api_key_env`` on every request and
    never stored on the object, so it cannot leak into a repr, a result or a saved report; a
    password in the URL (``http://user:pw@host/v1``) is moved off ``base_url`` the same way.
    ``timeout_s``: longest wait for the next complete event; ``deadline_s``: one request in all
    (default: DEFAULT_DEADLINE_S, or ``timeout_s`` where that is longer).
    """

    base_url: str
    api_key_env: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    deadline_s: float | None = None
    _auth: tuple[str, str] | None = field(default=None, repr=False, compare=False)
    _client: Any = field(default=None, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            url = urlparse(self.base_url)
            url.port  # noqa: B018 - parses the port: "host:abc" raises here, not mid-request
        except ValueError:
            url = None
        if has_controls(self.base_url) or " " in self.base_url:
            url = None
        if url is None:
            raise LabError(
                "not a server URL (its host or port does not parse); "
                "e.g. openai:http://127.0.0.1:8080/v1"
            )
        if url.password is not None or url.username is not None:
            self._auth = (unquote(url.username or ""), unquote(url.password or ""))
            url = url._replace(netloc=url.netloc.rpartition("@")[2])
        if url.query or url.fragment or url.params:  # may hold a token; and paths follow
            raise LabError(
                "a server URL takes no ?query or #fragment (give a key with --api-key-env); "
                "e.g. openai:http://127.0.0.1:8080/v1"
            )
        if url.scheme not in ("http", "https") or not url.hostname:
            raise LabError(
                f"not a server URL: {printable(repr(urlunparse(url)), 120)}; "
                "e.g. openai:http://127.0.0.1:8080/v1"
            )
        self.base_url = urlunparse(url).rstrip("/")
        self.timeout_s = seconds(self.timeout_s, "--timeout")
        if self.deadline_s is None:
            self.deadline_s = max(DEFAULT_DEADLINE_S, self.timeout_s)
        self.deadline_s = seconds(self.deadline_s, "--deadline")
        if self.api_key_env is not None:
            self._key()  # refuse an unset or unusable key now, not at the first request

    @property
    def host(self) -> str:
        return printable(urlparse(self.base_url).netloc, 120)

    def client(self) -> Any:
        """One pooled httpx client per endpoint (thread-safe; shared by load-test workers)."""
        import httpx

        with self._lock:
            if self._client is None:
                # Reads are bounded by Limits (below httpx); these are the backstops.
                timeout = httpx.Timeout(self.deadline_s, connect=CONNECT_TIMEOUT_S)
                limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
                self._client = _guard(httpx.Client(timeout=timeout, limits=limits, auth=self._auth))
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- secrets ----------------------------------------------------------------------
    def _key(self) -> str:
        var = self.api_key_env
        raw = os.environ.get(var or "", "")
        key = raw.strip()  # a trailing newline from a key file is not part of the key
        problem = "is unset" if not raw else _key_problem(key)
        if problem:
            # A verbose %tb prints each frame's locals: drop the key before raising.
            del raw, key
            raise LabError(f"the environment variable {var} (--api-key-env) {problem}")
        return key

    def redactor(self) -> Redactor:
        """What a server must never get shown back: the key as sent (and as set), the URL's
        password."""
        secrets = [self._auth[1] if self._auth else None]
        if self.api_key_env:
            raw = os.environ.get(self.api_key_env, "")
            secrets += [raw, raw.strip()]
        return Redactor(secrets)

    def _headers(self) -> dict[str, str]:
        # identity: a compressed body could expand past every size bound below.
        headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
        if self.api_key_env is not None:
            headers["Authorization"] = f"Bearer {self._key()}"
        return headers

    # -- requests -----------------------------------------------------------------------
    def limits(
        self,
        stop: threading.Event | None = None,
        *,
        idle_s: float | None = None,
        deadline_s: float | None = None,
    ) -> Limits:
        """Fresh clocks for one request (defaults: --timeout and --deadline)."""
        return Limits(
            idle_s or self.timeout_s, deadline_s or self.deadline_s, stop, self.redactor()
        )

    def models(self) -> list[str]:
        """The model ids the server lists at ``/models``."""
        limits = self.limits()
        with self._request("GET", "models", None, limits) as response:
            body = self._read_body(
                response, MAX_BODY_BYTES, limits, "its model list", progress=True
            )
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise LabError(
                f"{self.base_url}/models did not answer like an OpenAI-compatible server "
                f"(not JSON: {printable(repr(body[:80]), 100)})"
            ) from None
        return parse_models(data, self.host, limits.redact)

    def post_json(self, path: str, body: dict[str, Any], *, beside_v1: bool = False) -> Any:
        """One non-streamed POST under the same limits, key and bounds as a stream; the JSON
        answer (its shape is the caller's to check, with :mod:`llmlab.served.validate`).
        ``beside_v1``: ``path`` sits beside ``/v1`` (vLLM's ``/tokenize``), not under it."""
        limits = self.limits()
        url = self.base_url.removesuffix("/v1") + "/" + path if beside_v1 else path
        with self._request("POST", url, body, limits) as response:
            text = self._read_body(response, MAX_BODY_BYTES, limits, f"/{path}", progress=True)
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            raise LabError(
                f"the server at {self.host} answered /{path} with something that is not JSON: "
                f"{printable(repr(text[:80]), 100)}"
            ) from None

    def stream(
        self,
        path: str,
        body: dict[str, Any],
        *,
        stop: threading.Event | None = None,
        limits: Limits | None = None,
    ) -> Iterator[Event]:
        """POST ``body`` (with ``stream: true``) and yield each chunk as it arrives.

        Ends at ``data: [DONE]``. A stream that ends without it (the server closed the
        connection midway) raises :class:`LabError`, as do HTTP errors and the limits
        (:class:`StreamTimeout`). ``stop`` (set from another thread) ends the stream early
        without an error. The chunks are JSON, not yet checked: see
        :func:`llmlab.served.validate.parse_chunk`.
        """
        limits = limits or self.limits(stop)
        with self._request("POST", path, body | {"stream": True}, limits) as response:
            for line in self._lines(response, limits):
                if not line.startswith("data:"):
                    continue  # blank separators, ": keep-alive" comments, "event:" lines
                payload = line[5:].strip()
                if payload == "[DONE]":
                    return
                now = time.perf_counter() - limits.start
                try:
                    data = json.loads(payload)
                except (ValueError, RecursionError):
                    shown = printable(repr(payload[:80]), 100)
                    raise LabError(f"the server sent a chunk that is not JSON: {shown}") from None
                limits.progress()
                yield Event(now, data)
        if limits.expired == "stopped":
            return
        raise LabError(
            f"the server at {self.host} closed the stream before it finished "
            "(no [DONE]); the answer is incomplete"
        )

    # -- the transport, under the limits ----------------------------------------------------
    class _Request:
        """``with endpoint._request(...) as response``: the limits installed for this thread,
        status and encoding checked, transport errors turned into one line."""

        def __init__(self, endpoint: Endpoint, method: str, path: str, body: Any, limits: Limits):
            self.endpoint, self.limits = endpoint, limits
            self.method, self.path, self.body = method, path, body
            self._cm: Any = None
            self._outer: Limits | None = None

        def __enter__(self) -> Any:
            ep = self.endpoint
            client = ep.client()  # the first builds the pool (imports, TLS context): not timed
            self._outer = getattr(_current, "limits", None)
            _current.limits = self.limits
            self.limits.begin()
            url = self.path if "://" in self.path else f"{ep.base_url}/{self.path.lstrip('/')}"
            try:
                self._cm = client.stream(self.method, url, json=self.body, headers=ep._headers())
                response = self._cm.__enter__()
            except LabError:  # an unusable key, said as such
                _current.limits = self._outer
                raise
            except Exception as err:  # noqa: BLE001 - transport failures are one line
                _current.limits = self._outer
                raise ep._transport_error(err, self.limits) from None
            self.limits.progress()  # the status line and headers are a complete event
            try:
                if response.status_code != 200:
                    text = ep._read_body(
                        response, MAX_ERROR_BYTES, self.limits, "an error", cut=True
                    )
                    raise ep._status_error(response.status_code, text, self.body)
                encoding = response.headers.get("content-encoding", "identity").lower()
                if encoding not in ("", "identity"):
                    raise LabError(
                        f"the server at {ep.host} compressed its answer ({printable(encoding, 20)})"
                        " though asked not to; llmlab reads only uncompressed answers"
                    )
            except BaseException:
                self.__exit__(None, None, None)
                raise
            return response

        def __exit__(self, *exc: Any) -> None:
            try:
                self._cm.__exit__(None, None, None)  # closes the response, never raises ours
            except Exception:  # noqa: BLE001, S110 - closing a broken connection
                pass
            finally:
                _current.limits = self._outer

    def _request(self, method: str, path: str, body: Any, limits: Limits) -> Endpoint._Request:
        return Endpoint._Request(self, method, path, body, limits)

    def _raw(self, response: Any, limits: Limits) -> Iterator[bytes]:
        """The body's bytes as they arrive, transport errors as one line."""
        it = response.iter_raw()
        while True:
            try:
                chunk = next(it)
            except StopIteration:
                return
            except Exception as err:  # noqa: BLE001 - transport failures are one line
                if limits.expired == "stopped":
                    return
                raise self._transport_error(err, limits) from None
            yield chunk

    def _read_body(
        self,
        response: Any,
        limit: int,
        limits: Limits,
        what: str,
        *,
        progress: bool = False,
        cut: bool = False,
    ) -> str:
        """The whole body, at most ``limit`` bytes (``cut``: its first ``limit`` bytes; else
        more is refused); with ``progress`` every read that brings bytes restarts the idle
        clock (a body has no events; the deadline still holds)."""
        data = bytearray()
        for chunk in self._raw(response, limits):
            if progress:
                limits.progress()
            data += chunk
            if len(data) > limit and cut:
                del data[limit:]
                break
            if len(data) > limit:
                raise LabError(
                    f"the server at {self.host} sent more than {limit >> 10:,} KiB for {what}; "
                    "llmlab stops reading there"
                )
        return limits.redact(data.decode("utf-8", errors="replace"))

    def _lines(self, response: Any, limits: Limits) -> Iterator[str]:
        """SSE lines, each bounded by MAX_LINE_BYTES (httpx's iter_lines buffers any length)."""
        buffer = bytearray()
        searched = 0
        for chunk in self._raw(response, limits):
            buffer += chunk
            while (end := buffer.find(b"\n", searched)) >= 0:
                line = bytes(buffer[:end]).rstrip(b"\r")
                del buffer[: end + 1]
                searched = 0
                yield limits.redact(line.decode("utf-8", errors="replace"))
            searched = len(buffer)
            if len(buffer) > MAX_LINE_BYTES:
                raise LabError(
                    f"the server at {self.host} sent a line longer than {MAX_LINE_BYTES >> 10:,} "
                    "KiB; llmlab stops reading there"
                )
        if buffer:
            yield limits.redact(buffer.decode("utf-8", errors="replace"))

    # -- errors, one line each ----------------------------------------------------------
    def _transport_error(self, err: Exception, limits: Limits) -> LabError:
        import httpx

        if limits.expired == "deadline":
            return StreamTimeout(
                f"the request to {self.host} ran past its deadline of {limits.deadline_s:g} s "
                "(raise it with --deadline)",
                "deadline",
            )
        if limits.expired == "idle" or isinstance(err, httpx.ReadTimeout):
            trickle = limits.bytes_since_event
            what = f"only {trickle:,} bytes and no complete event" if trickle else "nothing"
            return StreamTimeout(
                f"the server at {self.host} sent {what} for {limits.idle_s:g} s "
                "(request timeout; raise it with --timeout)",
                "idle",
            )
        if limits.expired == "stopped":
            return LabError(f"the request to {self.host} was stopped")
        if isinstance(err, httpx.ConnectTimeout | httpx.ConnectError):
            return LabError(
                f"cannot reach {self.base_url} ({type(err).__name__}); is the server running?"
            )
        if isinstance(err, httpx.RemoteProtocolError | httpx.ReadError):
            return LabError(
                f"the server at {self.host} closed the connection midway; the answer is incomplete"
            )
        detail = printable(self.redactor()(str(err)), 160)
        return LabError(f"request to {self.host} failed: {type(err).__name__}: {detail}")

    def _status_error(self, status: int, text: str, body: dict[str, Any] | None) -> LabError:
        detail = error_message(_json_or_text(text), self.redactor())  # text: redacted already
        if status in (401, 403):
            how = (
                f"check the key in ${self.api_key_env}"
                if self.api_key_env
                else "pass --api-key-env VAR with the name of the variable that holds the key"
            )
            return LabError(f"the server at {self.host} refused the request ({status}); {how}")
        if status == 404 and body is not None and "model" in body:
            return LabError(
                f"the server at {self.host} answered 404 for model {body['model']!r}: {detail}"
            )
        return LabError(f"the server at {self.host} answered {status}: {detail}")


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text
