"""A small embedding server on loopback for tests: OpenAI ``/v1/embeddings`` and TEI ``/embed`` /
``/embed_sparse``, wrapping a real model (all-MiniLM-L6-v2 through sentence-transformers), with
faults injected per text.

A text containing a marker gets the fault; ``:N`` limits it to the first N requests that carry the
text (so a retry can succeed), without it the fault is permanent:

  <<429:N>>      429 Too Many Requests with Retry-After (default N=2)
  <<500[:N]>>    500 Internal Server Error
  <<400>>        400 Bad Request naming the text ("input rejected")
  <<echo-auth>>  400 whose body echoes the Authorization header (a leaky service)
  <<slow[:N]>>   sleep ``slow_seconds`` before answering (past a short client timeout)
  <<truncate[:N]>> 200 with the JSON cut in half
  <<dim>>        this text's vector has one dimension too few
  <<nan>>        this text's vector holds NaN
  <<count>>      this text's vector is left out of the response (wrong count)
  <<toolarge>>   413 while the request carries more than one text

``max_batch`` makes any request with more texts a 413. ``api_key`` requires ``Bearer <key>``.
Only 127.0.0.1 is bound; ``max_requests`` caps the requests served (then 410) so a bug cannot spin.
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_MARKER = re.compile(r"<<(\w[\w-]*?)(?::(\d+))?>>")
_DEFAULT_TIMES = {"429": 2}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # a client that timed out and hung up: not news
        pass


class EmbeddingServer:
    def __init__(
        self,
        encode: Callable[[list[str]], Any],
        *,
        sparse: Callable[[list[str]], list[list[dict[str, Any]]]] | None = None,
        api_key: str | None = None,
        max_batch: int | None = None,
        slow_seconds: float = 1.5,
        retry_after: str = "0.2",
        max_requests: int = 5000,
        model_name: str = "all-MiniLM-L6-v2",
    ):
        self._encode = encode
        self._sparse = sparse
        self.api_key = api_key
        self.max_batch = max_batch
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self.max_requests = max_requests
        self.model_name = model_name
        self.lock = threading.Lock()
        self._model_lock = threading.Lock()
        self.fired: Counter[tuple[str, str]] = Counter()
        self.statuses: Counter[int] = Counter()
        self.batch_sizes: list[int] = []
        self.paths: Counter[str] = Counter()
        self.requests = 0
        self.inflight = 0
        self.max_inflight = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> EmbeddingServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                if self.path.rstrip("/") in ("/health", "/v1/models"):
                    self._send(200, {"status": "ok", "data": [{"id": server.model_name}]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):
                with server.lock:
                    server.requests += 1
                    n = server.requests
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    raw = self.rfile.read(length)
                    if n > server.max_requests:
                        return self._send(410, {"error": "test server request cap reached"})
                    status, body, headers, delay = server.handle(self.path, self.headers, raw)
                    if delay:
                        time.sleep(delay)
                    self._send(status, body, headers)
                finally:
                    with server.lock:
                        server.inflight -= 1

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                with server.lock:
                    server.statuses[status] += 1
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> EmbeddingServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    # ------------------------------------------------------------------ behaviour
    def _fires(self, marker: str, times: int | None, text: str) -> bool:
        """Whether ``marker`` fires for this request of ``text`` (and count it)."""
        limit = times if times is not None else _DEFAULT_TIMES.get(marker)
        with self.lock:
            key = (marker, text)
            if limit is not None and self.fired[key] >= limit:
                return False
            self.fired[key] += 1
            return True

    def encode(self, texts: list[str]) -> list[list[float]]:
        with self._model_lock:
            arr = self._encode(texts)
        return [list(map(float, v)) for v in arr]

    def handle(self, path: str, headers: Any, raw: bytes) -> tuple[int, Any, dict[str, str], float]:
        path = path.split("?", maxsplit=1)[0].rstrip("/")
        self.paths[path] += 1
        auth = headers.get("Authorization")
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            return 401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}}, {}, 0
        try:
            req = json.loads(raw)
        except ValueError:
            return 400, {"error": "body is not JSON"}, {}, 0
        if path in ("/v1/embeddings", "/embeddings"):
            texts, style = req.get("input"), "openai"
        elif path in ("/embed", "/embed_sparse"):
            texts, style = req.get("inputs"), path[1:]
        else:
            return 404, {"error": f"no route {path}"}, {}, 0
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return 422, {"error": "input must be a string or a list of strings"}, {}, 0
        with self.lock:
            self.batch_sizes.append(len(texts))
        if self.max_batch is not None and len(texts) > self.max_batch:
            return 413, {"error": f"batch size {len(texts)} > maximum allowed batch size {self.max_batch}"}, {}, 0

        markers = [
            (i, m.group(1), int(m.group(2)) if m.group(2) else None) for i, t in enumerate(texts) for m in _MARKER.finditer(t)
        ]
        delay = 0.0
        item_faults: dict[int, str] = {}
        truncate = False
        for i, name, times in markers:
            t = texts[i]
            if name == "toolarge":
                if len(texts) > 1:
                    return 413, {"error": "Payload Too Large"}, {}, 0
                continue
            if name in ("dim", "nan", "count"):
                item_faults[i] = name
                continue
            if not self._fires(name, times, t):
                continue
            if name == "429":
                return (
                    429,
                    {"error": {"message": "rate limit reached", "type": "rate_limit"}},
                    {"Retry-After": self.retry_after},
                    0,
                )
            if name == "500":
                return 500, {"error": "internal error while embedding"}, {}, 0
            if name == "400":
                return (
                    400,
                    {"error": {"message": f"input {i} rejected by the test server", "type": "invalid_request_error"}},
                    {},
                    0,
                )
            if name == "echo-auth":
                return 400, {"error": {"message": f"bad request; you sent Authorization: {auth}"}}, {}, 0
            if name == "slow":
                delay = max(delay, self.slow_seconds)
            if name == "truncate":
                truncate = True

        if style == "embed_sparse":
            if self._sparse is None:
                return 424, {"error": "no sparse model"}, {}, delay
            body: Any = self._sparse(texts)
        else:
            vectors = self.encode(texts)
            for i, fault in item_faults.items():
                if fault == "dim":
                    vectors[i] = vectors[i][:-1]
                elif fault == "nan":
                    vectors[i][0] = float("nan")
            keep = [i for i in range(len(texts)) if item_faults.get(i) != "count"]
            if style == "openai":
                body = {
                    "object": "list",
                    "model": req.get("model", self.model_name),
                    "data": [{"object": "embedding", "index": j, "embedding": vectors[i]} for j, i in enumerate(keep)],
                    "usage": {
                        "prompt_tokens": sum(len(t.split()) for t in texts),
                        "total_tokens": sum(len(t.split()) for t in texts),
                    },
                }
            else:
                body = [vectors[i] for i in keep]
        data = json.dumps(body).encode()  # NaN goes out as the bare NaN literal, as some servers do
        if truncate:
            data = data[: max(1, len(data) // 2)]
        return 200, data, {}, delay


def sentence_transformer_encoder(model: Any) -> Callable[[Sequence[str]], Any]:
    """Wrap a loaded SentenceTransformer as the server's encode function."""

    def encode(texts: Sequence[str]):
        return model.encode(list(texts), batch_size=max(len(texts), 1), convert_to_numpy=True, show_progress_bar=False)

    return encode


def token_count_sparse(tokenizer: Any) -> Callable[[list[str]], list[list[dict[str, Any]]]]:
    """A deterministic stand-in for a sparse model: each token id weighted 1 + 0.5 * (count - 1)."""

    def sparse(texts: list[str]) -> list[list[dict[str, Any]]]:
        out = []
        for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
            counts = Counter(ids)
            out.append([{"index": int(i), "value": 1.0 + 0.5 * (c - 1)} for i, c in sorted(counts.items())])
        return out

    return sparse
