"""A tiny OpenAI-compatible server on 127.0.0.1 for the faults a real engine will not produce
on demand: a 401, a stream cut midway, a stall past the client's timeout, no log-probabilities,
and a hostile server (one that streams forever, drips bytes, echoes the key it was sent, sends
escape sequences, absurd counts or malformed JSON). Like vLLM it has ``/tokenize`` and
``/detokenize`` (one token per word, and a BOS token the server adds to every completion prompt)
and honours ``ignore_eos``; mode "notokenize" drops them.

``FakeServer(mode=...)`` starts it in a thread; ``.url`` is its ``/v1`` base; ``.stop()``.
The hostile knobs, all optional:

- ``models``: the ids ``/models`` lists (or ``models_body``: the whole answer, any JSON);
- ``chunks``: raw ``data:`` payloads (strings) streamed instead of the answer, then ``[DONE]``;
  ``{KEY}`` in any of them becomes the Authorization header the server received;
- ``error``: ``(status, body text)`` every POST answers with;
- ``usage``: the usage report to send (any JSON value);
- modes ``forever`` (tokens past max_tokens, never [DONE]), ``loris`` (one byte per
  ``drip_s``), ``keepalive`` (SSE comments only), ``overstay`` (the answer, then comments
  instead of [DONE]), ``echo`` (the key it received as its model list, error and answer).
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "fake-model"
KEY = "sk-test-do-not-print-4242"
ANSWER = ["The", " capital", " of", " France", " is", " Paris", "."]
#: Top log-probabilities the fake returns at every step (the chosen token first).
TOP = {"The": -0.2, "Paris": -2.5, "It": -3.0}  # sums to 0.95: a tail remains
_UNSET = object()


class _Handler(BaseHTTPRequestHandler):
    server_version = "fake-openai/1"

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    @property
    def fake(self) -> FakeServer:
        return self.server.fake  # type: ignore[attr-defined]

    def _received_key(self) -> str:
        return (self.headers.get("Authorization") or "").removeprefix("Bearer ")

    def _fill(self, text: str) -> str:
        return text.replace("{KEY}", self._received_key())

    def _raw(self, status: int, text: str, content_type: str = "application/json") -> None:
        data = text.encode("utf-8", errors="surrogatepass")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _json(self, status: int, body) -> None:
        self._raw(status, json.dumps(body))

    def _authorized(self) -> bool:
        if self.fake.mode != "auth":
            return True
        if self.headers.get("Authorization") == f"Bearer {KEY}":
            return True
        self._json(401, {"error": {"message": "invalid api key", "type": "auth"}})
        return False

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if not self.path.rstrip("/").endswith("/models"):
            self._json(404, {"error": {"message": "not found"}})
        elif self.fake.models_body is not _UNSET:
            self._raw(200, self._fill(json.dumps(self.fake.models_body)))
        elif self.fake.mode == "echo":
            ids = [MODEL, f"bearer-{self._received_key()}"]
            self._json(200, {"object": "list", "data": [{"id": i} for i in ids]})
        else:
            ids = self.fake.models or [MODEL]
            self._json(200, {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]})

    def do_POST(self) -> None:
        if not self._authorized():
            return
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path in ("/tokenize", "/detokenize"):
            self._tokenizer(body)
            return
        self.fake.requests.append(body)
        if self.fake.error is not None:
            status, text = self.fake.error
            self._raw(status, self._fill(text))
            return
        if self.fake.mode == "echo" and body.get("max_tokens") == 1:
            self._json(400, {"error": {"message": f"bad header Bearer {self._received_key()}"}})
            return
        if body.get("model") not in (self.fake.models or [MODEL]):
            self._json(404, {"error": {"message": f"model {body.get('model')!r} not found"}})
            return
        chat = self.path.endswith("/chat/completions")
        if not body.get("stream"):  # one JSON answer; mode "routing": vLLM's routed_experts
            choice = {"index": 0, "message": {"role": "assistant", "content": ANSWER[0]}}
            if self.fake.mode == "routing":
                choice["routed_experts"] = None
            self._json(200, {"choices": [choice]})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        with contextlib.suppress(OSError):  # the client hung up, as one at its limit does
            if self.fake.mode == "serial":  # one request at a time, like a server with no batching
                with self.fake.serial:
                    self._stream(body, chat)
            else:
                self._stream(body, chat)

    def _stream(self, body: dict, chat: bool) -> None:
        fake = self.fake
        if fake.mode == "slow":
            time.sleep(fake.stall_s)
        if fake.mode == "loris":  # one byte at a time, never a whole line
            for byte in b'data: {"choices": [{"index": 0, "delta": {"content": "x"}}]}\n\n' * 99:
                if fake.stopped:
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(fake.drip_s)
            return
        if fake.mode == "keepalive":
            while not fake.stopped:
                self.wfile.write(b": ping\n\n")
                self.wfile.flush()
                time.sleep(fake.drip_s)
            return
        if fake.chunks is not None:
            for payload in fake.chunks:
                self.wfile.write(f"data: {self._fill(payload)}\n\n".encode(errors="surrogatepass"))
                self.wfile.flush()
                time.sleep(fake.token_s)
            self.wfile.write(b"data: [DONE]\n\n")
            return
        n = min(int(body.get("max_tokens", 16)), len(ANSWER))
        answer = ANSWER
        if body.get("ignore_eos"):  # vLLM's extension: every max_tokens token, no early stop
            n = int(body.get("max_tokens", 16))
            answer = [ANSWER[i % len(ANSWER)] for i in range(n)]
        want_lp = bool(body.get("logprobs")) and fake.mode != "nologprobs"
        if chat:
            self._send({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
        i = 0
        while i < n or fake.mode == "forever":
            if fake.stopped:
                return
            piece = answer[i % len(answer)]
            if fake.mode == "echo":
                piece = f" {self._received_key()}" if i == 1 else piece
            if fake.mode == "close" and i == 2:
                self.wfile.flush()
                self.close_connection = True
                return  # no [DONE]: the stream ends midway
            time.sleep(fake.token_s)
            top = dict(TOP) if i == 0 else {piece: -0.05, "x": -3.5}
            finish = "stop" if i == n - 1 and n == len(answer) else None
            if n < len(answer) and i == n - 1:
                finish = "length"
            if chat:
                choice = {"index": 0, "delta": {"content": piece}, "finish_reason": finish}
                if want_lp:
                    choice["logprobs"] = {
                        "content": [
                            {
                                "token": piece,
                                "logprob": top.get(piece, -0.1),
                                "top_logprobs": [
                                    {"token": t, "logprob": lp} for t, lp in top.items()
                                ],
                            }
                        ]
                    }
            else:
                choice = {"index": 0, "text": piece, "finish_reason": finish}
                if want_lp:
                    choice["logprobs"] = {
                        "tokens": [piece],
                        "token_logprobs": [top.get(piece, -0.1)],
                        "top_logprobs": [top],
                    }
            self._send({"choices": [choice]})
            i += 1
        usage = (body.get("stream_options") or {}).get("include_usage")
        if usage and fake.mode != "nousage":
            prompt_tokens = 9 if chat else 1 + len(str(body.get("prompt", "")).split())
            report = {"prompt_tokens": prompt_tokens, "completion_tokens": n}
            report = report if fake.usage is _UNSET else fake.usage
            self._send({"choices": [], "usage": report})
        if fake.mode == "overstay":
            while not fake.stopped:
                self.wfile.write(b": still here\n\n")
                self.wfile.flush()
                time.sleep(fake.drip_s)
            return
        self.wfile.write(b"data: [DONE]\n\n")

    def _tokenizer(self, body: dict) -> None:
        """One token per word, ids from a vocabulary that grows; a BOS (id 0) on request."""
        vocab = self.fake.vocab
        if self.fake.mode == "notokenize":
            self._json(404, {"detail": "Not Found"})
        elif self.path == "/tokenize":
            ids = [vocab.setdefault(w, len(vocab) + 1) for w in str(body["prompt"]).split()]
            if body.get("add_special_tokens", True):
                ids = [0, *ids]
            self._json(200, {"tokens": ids, "count": len(ids), "max_model_len": 2048})
        else:
            words = {i: w for w, i in vocab.items()}
            self._json(200, {"prompt": " ".join(words[i] for i in body["tokens"] if i)})

    def _send(self, data: dict) -> None:
        self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()


class FakeServer:
    def __init__(
        self,
        mode: str = "ok",
        token_s: float = 0.002,
        stall_s: float = 2.0,
        *,
        drip_s: float = 0.05,
        models: list[str] | None = None,
        models_body=_UNSET,
        chunks: list[str] | None = None,
        error: tuple[int, str] | None = None,
        usage=_UNSET,
        port: int = 0,
    ) -> None:
        self.mode, self.token_s, self.stall_s, self.drip_s = mode, token_s, stall_s, drip_s
        self.models, self.models_body, self.chunks = models, models_body, chunks
        self.error, self.usage = error, usage
        self.stopped = False
        self.requests: list[dict] = []
        self.vocab: dict[str, int] = {}
        self.serial = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.fake = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.stopped = True  # ends the endless modes' loops
        self.httpd.shutdown()
        self.httpd.server_close()


def top_probability(token: str) -> float:
    return math.exp(TOP[token])


if __name__ == "__main__":  # a stand-in engine process: python -m tests.served_fake --port P
    import sys

    port = int(sys.argv[sys.argv.index("--port") + 1])
    print("fake engine: starting", flush=True)
    FakeServer(port=port).thread.join()
