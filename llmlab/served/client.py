"""Talk to an OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp, Ollama): list its models
and stream completions, timestamping every streamed event on arrival.

Why httpx and a few lines of SSE parsing rather than the ``openai`` package: httpx is already
installed with transformers' hub client, it gives us each streamed line the moment it arrives
(the clock for TTFT and ITL), and it exposes engine-specific chunk fields (llama.cpp's and vLLM's
logprobs, ``usage`` on the last chunk) without a typed model dropping them. The openai client
would also retry failed requests by default, which a load test must never do silently.
The OpenAI stream is plain server-sent events: ``data: {json}`` lines ending with
``data: [DONE]``; nothing more of SSE is used by these servers.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from llmlab.errors import LabError

#: Seconds to wait for the server to accept a connection / between two streamed events.
CONNECT_TIMEOUT_S = 5.0
DEFAULT_TIMEOUT_S = 60.0


@dataclass
class Event:
    """One streamed chunk: its arrival time (seconds since the request was sent) and body."""

    t: float
    data: dict[str, Any]


@dataclass
class Endpoint:
    """An OpenAI-compatible base URL (``http://host:port/v1``) and how to authenticate.

    The API key is read from the environment variable ``api_key_env`` on every request and
    never stored on the object, so it cannot leak into a repr, a result or a saved report.
    """

    base_url: str
    api_key_env: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    _client: Any = field(default=None, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        url = urlparse(self.base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise LabError(
                f"not a server URL: {self.base_url!r}; e.g. openai:http://127.0.0.1:8080/v1"
            )
        self.base_url = self.base_url.rstrip("/")
        if self.api_key_env is not None and not os.environ.get(self.api_key_env):
            raise LabError(f"the environment variable {self.api_key_env} (--api-key-env) is unset")
        if self.timeout_s <= 0:
            raise LabError(f"the timeout must be positive, got {self.timeout_s}")

    @property
    def host(self) -> str:
        return urlparse(self.base_url).netloc

    def client(self) -> Any:
        """One pooled httpx client per endpoint (thread-safe; shared by load-test workers)."""
        import httpx

        with self._lock:
            if self._client is None:
                timeout = httpx.Timeout(self.timeout_s, connect=CONNECT_TIMEOUT_S)
                limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
                self._client = httpx.Client(timeout=timeout, limits=limits)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise LabError(f"the environment variable {self.api_key_env} is unset")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    # -- requests -----------------------------------------------------------------------
    def models(self) -> list[str]:
        """The model ids the server lists at ``/models``."""
        import httpx

        try:
            response = self.client().get(f"{self.base_url}/models", headers=self._headers())
        except httpx.HTTPError as err:
            raise self._transport_error(err) from None
        if response.status_code != 200:
            raise self._status_error(response.status_code, response.text, None)
        try:
            return [str(m["id"]) for m in response.json().get("data", [])]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise LabError(
                f"{self.base_url}/models did not answer like an OpenAI-compatible server"
            ) from None

    def stream(
        self, path: str, body: dict[str, Any], *, stop: threading.Event | None = None
    ) -> Iterator[Event]:
        """POST ``body`` (with ``stream: true``) and yield each chunk as it arrives.

        Ends at ``data: [DONE]``. A stream that ends without it (the server closed the
        connection midway) raises :class:`LabError`, as do HTTP errors and timeouts.
        ``stop`` (set from another thread) ends the stream early without an error.
        """
        import httpx

        start = time.perf_counter()
        url = f"{self.base_url}/{path.lstrip('/')}"
        try:
            with self.client().stream(
                "POST", url, json=body | {"stream": True}, headers=self._headers()
            ) as response:
                if response.status_code != 200:
                    response.read()
                    raise self._status_error(response.status_code, response.text, body)
                for line in response.iter_lines():
                    if stop is not None and stop.is_set():
                        return
                    if not line.startswith("data:"):
                        continue  # blank separators, ": keep-alive" comments, "event:" lines
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        return
                    now = time.perf_counter() - start
                    try:
                        data = json.loads(payload)
                    except ValueError:
                        raise LabError(
                            f"the server sent a chunk that is not JSON: {payload[:80]!r}"
                        ) from None
                    if isinstance(data, dict) and "error" in data:
                        raise LabError(f"the server reported an error: {_message(data)}")
                    yield Event(now, data)
        except httpx.HTTPError as err:
            raise self._transport_error(err) from None
        if stop is None or not stop.is_set():
            raise LabError(
                f"the server at {self.host} closed the stream before it finished "
                "(no [DONE]); the answer is incomplete"
            )

    # -- errors, one line each ----------------------------------------------------------
    def _transport_error(self, err: Exception) -> LabError:
        import httpx

        if isinstance(err, httpx.ConnectTimeout | httpx.ConnectError):
            return LabError(
                f"cannot reach {self.base_url} ({type(err).__name__}); is the server running?"
            )
        if isinstance(err, httpx.TimeoutException):
            return LabError(
                f"the server at {self.host} sent nothing for {self.timeout_s:g} s "
                "(request timeout; raise it with --timeout)"
            )
        if isinstance(err, httpx.RemoteProtocolError):
            return LabError(
                f"the server at {self.host} closed the connection midway; the answer is incomplete"
            )
        return LabError(f"request to {self.host} failed: {type(err).__name__}: {err}")

    def _status_error(self, status: int, text: str, body: dict[str, Any] | None) -> LabError:
        detail = _message(_json_or_text(text))
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
    except ValueError:
        return text


def _message(data: Any) -> str:
    """The error message out of the shapes servers use: {"error": {"message"}}, {"detail"}."""
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data))
        if isinstance(err, dict):
            err = err.get("message", err)
        text = str(err)
    else:
        text = str(data)
    text = " ".join(text.split())
    return text[:200] + ("…" if len(text) > 200 else "")
