"""A tiny OpenAI-compatible server on 127.0.0.1 for the faults a real engine will not produce
on demand: a 401, a stream cut midway, a stall past the client's timeout, no log-probabilities.
Like vLLM it has ``/tokenize`` and ``/detokenize`` (one token per word, and a BOS token the
server adds to every completion prompt) and honours ``ignore_eos``; mode "notokenize" drops them.

``FakeServer(mode=...)`` starts it in a thread; ``.url`` is its ``/v1`` base; ``.stop()``.
"""

from __future__ import annotations

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


class _Handler(BaseHTTPRequestHandler):
    server_version = "fake-openai/1"

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    @property
    def fake(self) -> FakeServer:
        return self.server.fake  # type: ignore[attr-defined]

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

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
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        if not self._authorized():
            return
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path in ("/tokenize", "/detokenize"):
            self._tokenizer(body)
            return
        self.fake.requests.append(body)
        if body.get("model") != MODEL:
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
        if self.fake.mode == "slow":
            time.sleep(self.fake.stall_s)
        if self.fake.mode == "serial":  # one request at a time, like a server with no batching
            with self.fake.serial:
                self._stream(body, chat)
            return
        self._stream(body, chat)

    def _stream(self, body: dict, chat: bool) -> None:
        n = min(int(body.get("max_tokens", 16)), len(ANSWER))
        answer = ANSWER
        if body.get("ignore_eos"):  # vLLM's extension: every max_tokens token, no early stop
            n = int(body.get("max_tokens", 16))
            answer = [ANSWER[i % len(ANSWER)] for i in range(n)]
        want_lp = bool(body.get("logprobs")) and self.fake.mode != "nologprobs"
        if chat:
            self._send({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
        for i, piece in enumerate(answer[:n]):
            if self.fake.mode == "close" and i == 2:
                self.wfile.flush()
                self.close_connection = True
                return  # no [DONE]: the stream ends midway
            time.sleep(self.fake.token_s)
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
        usage = (body.get("stream_options") or {}).get("include_usage")
        if usage and self.fake.mode != "nousage":
            prompt_tokens = 9 if chat else 1 + len(str(body.get("prompt", "")).split())
            self._send(
                {"choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n}}
            )
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
        self, mode: str = "ok", token_s: float = 0.002, stall_s: float = 2.0, port: int = 0
    ) -> None:
        self.mode, self.token_s, self.stall_s = mode, token_s, stall_s
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
        self.httpd.shutdown()
        self.httpd.server_close()


def top_probability(token: str) -> float:
    return math.exp(TOP[token])


if __name__ == "__main__":  # a stand-in engine process: python -m tests.served_fake --port P
    import sys

    port = int(sys.argv[sys.argv.index("--port") + 1])
    print("fake engine: starting", flush=True)
    FakeServer(port=port).thread.join()
