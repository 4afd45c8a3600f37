"""The HTTP core shared by every remote encoder kind.

A :class:`RemoteClient` is what a remote encoder "loads": one per worker process and config (shared
through ``apache_beam.utils.shared`` like a local model). It

- splits a batch into requests by count, characters and estimated tokens;
- sends at most ``concurrency`` requests at a time (a process-wide semaphore, so several DoFn threads
  together stay under it), each after the shared rate limiter admits it;
- retries 429 / 5xx / timeouts / connection errors / malformed JSON with exponential backoff and
  jitter (tenacity), honouring Retry-After (and pausing every thread that shares the limiter);
- splits a batch the service rejects as too large, and bisects a failing batch so that one bad text
  fails alone while the rest of its batch succeeds;
- validates every response (count, dimension, NaN, types) before a vector reaches the pipeline;
- never puts a secret into a message: every message goes through the config's :class:`Redactor`.

Kind-specific request and response shapes live in :mod:`.adapters`.
"""
from __future__ import annotations

import concurrent.futures as cf
import email.utils
import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from neural_ingest.config import ConfigError
from neural_ingest.encoders.base import EncodeError
from neural_ingest.encoders.remote.ratelimit import RateLimiter, shared_limiter
from neural_ingest.encoders.remote.redact import Redactor, safe_url, scrub_auth_headers

if TYPE_CHECKING:  # pragma: no cover
    from neural_ingest.encoders.remote.adapters import Adapter

log = logging.getLogger(__name__)

# Statuses worth another try: the service is busy or broken for a moment.
RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}
# Statuses that will fail for every text the same way: no point bisecting a batch.
FATAL_STATUSES = {401, 403, 404, 405}
_TOO_LARGE = re.compile(
    r"too (large|long|many)|exceed|maximum (allowed )?(batch|context|input|request)|max(imum)?[_ ]batch|batch size|payload",
    re.I,
)


class RemoteSetupError(ConfigError):
    """The remote encoder cannot work as configured (unreachable, unauthorised, no such model, wrong
    dimension...): raised while loading, shown to the user as a config problem."""


class RemoteError(EncodeError):
    """A request (or one text of it) failed. ``reason`` becomes the dead letter's error type and the
    ``failed.encode.<reason>`` counter: http_<status>, timeout, connection, bad_response,
    invalid_vector, too_large."""

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        too_large: bool = False,
        fatal: bool = False,
        bisect: bool = True,
        attempts: int = 1,
    ):
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.too_large = too_large
        self.fatal = fatal
        self.bisect = bisect and not fatal
        self.attempts = attempts

    def __reduce__(self) -> tuple[Any, ...]:  # picklable with its attributes (Beam may pickle exceptions)
        return (_rebuild_error, (str(self), self.__dict__.copy()))


def _rebuild_error(message: str, attrs: dict[str, Any]) -> RemoteError:
    e = RemoteError(message, reason=attrs.get("reason", "remote_error"))
    e.__dict__.update(attrs)
    return e


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if dt is None:
        return None
    return max(0.0, dt.timestamp() - (now if now is not None else time.time()))


def error_text(body: str) -> str:
    """The human part of an error body: OpenAI {"error": {"message"}}, TEI {"error"}, OpenSearch
    {"error": {"reason"}}, FastAPI {"detail"}, else the text itself."""
    try:
        payload = json.loads(body)
    except (ValueError, TypeError):
        return body.strip()
    if isinstance(payload, dict):
        err = payload.get("error", payload.get("detail", payload.get("message")))
        if isinstance(err, str):
            return err
        if isinstance(err, dict):
            for key in ("message", "reason", "detail"):
                if isinstance(err.get(key), str):
                    root = err.get("root_cause")
                    extra = ""
                    if (
                        isinstance(root, list)
                        and root
                        and isinstance(root[0], dict)
                        and root[0].get("reason") not in (None, err[key])
                    ):
                        extra = f" ({root[0].get('reason')})"
                    return str(err[key]) + extra
        if isinstance(err, list) and err:
            return json.dumps(err)[:500]
    return body.strip()


class ResultMemo:
    """Per-text results of a batch that partly failed, kept until the DoFn's one-by-one retry asks for
    them, so that retry costs no further requests. Bounded; oldest entries go first."""

    def __init__(self, limit: int = 4096):
        self.limit = limit
        self._d: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def put_all(self, texts: Sequence[str], results: Sequence[Any]) -> None:
        with self._lock:
            for t, r in zip(texts, results):
                self._d[t] = r
                self._d.move_to_end(t)
            while len(self._d) > self.limit:
                self._d.popitem(last=False)

    def pop(self, text: str) -> tuple[bool, Any]:
        with self._lock:
            if text in self._d:
                return True, self._d.pop(text)
        return False, None

    def __len__(self) -> int:
        return len(self._d)


class _Wait:
    """tenacity wait: the service's Retry-After when it gave one, else exponential backoff + jitter."""

    def __init__(self, initial: float, maximum: float, jitter: float, max_retry_after: float):
        self.exp = wait_exponential_jitter(initial=initial, max=maximum, jitter=jitter)
        self.max_retry_after = max_retry_after

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        ra = getattr(exc, "retry_after", None)
        if ra is not None:
            return min(float(ra), self.max_retry_after)
        return self.exp(state)


def estimate_tokens(text: str, chars_per_token: float) -> int:
    """A tokenizer-free token estimate: characters / chars_per_token, at least the word count."""
    return max(1, math.ceil(len(text) / chars_per_token), len(text.split()))


class RemoteClient:
    """Session, limits and the request loop for one remote encoder config (see module doc)."""

    def __init__(self, cfg: Any, adapter: Adapter[Any], redactor: Redactor, *, dimension: int | None = None):
        self.cfg = cfg
        self.adapter = adapter
        self.redact = redactor
        self.kind = cfg.output
        self.dimension = dimension
        self.label = f"{cfg.type} {redactor(safe_url(adapter.display_url()))}"
        self.session = requests.Session()  # honours HTTPS_PROXY / NO_PROXY / REQUESTS_CA_BUNDLE
        pool = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=max(cfg.concurrency, 1) + 2, max_retries=0)
        self.session.mount("http://", pool)
        self.session.mount("https://", pool)
        self.verify: bool | str = cfg.ca_certs if (cfg.verify_certs and cfg.ca_certs) else cfg.verify_certs
        self.inflight = threading.BoundedSemaphore(cfg.concurrency)
        self.pool = cf.ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix=f"remote-{cfg.type}")
        rl = cfg.rate_limit
        self.limiter: RateLimiter = shared_limiter(
            rl.key or f"{cfg.type}:{safe_url(adapter.display_url())}", rl.requests_per_minute, rl.tokens_per_minute
        )
        self.memo = ResultMemo()
        self._max_count = max(1, min(cfg.request_batch_size, adapter.max_batch() or cfg.request_batch_size))
        self._lock = threading.Lock()
        # Counters for tests and the log: requests sent, retries, splits of too-large batches.
        self.stats = {"requests": 0, "retries": 0, "split_too_large": 0, "bisected": 0, "max_inflight": 0}
        self._inflight_now = 0

    # ------------------------------------------------------------------ public
    def encode_all(self, texts: Sequence[str], *, query: bool = False) -> list[Any]:
        """One result per text, in order: a float32 array / sparse dict, or a RemoteError."""
        if not texts:
            return []
        chunks = self.plan(texts)
        if len(chunks) == 1:
            return self._run_chunk(list(texts), query)
        futures = [self.pool.submit(self._run_chunk, [texts[i] for i in chunk], query) for chunk in chunks]
        results: list[Any] = [None] * len(texts)
        for chunk, fut in zip(chunks, futures):
            for i, r in zip(chunk, fut.result()):
                results[i] = r
        return results

    def plan(self, texts: Sequence[str]) -> list[list[int]]:
        """Group text indexes into requests: at most the count, character and token limits each
        (a single text over a limit goes alone: the service truncates it or says why not)."""
        c = self.cfg
        with self._lock:
            max_count = self._max_count
        chunks: list[list[int]] = []
        cur: list[int] = []
        chars = toks = 0
        for i, t in enumerate(texts):
            n_chars, n_toks = len(t), estimate_tokens(t, c.chars_per_token)
            over = cur and (
                len(cur) >= max_count
                or (c.max_request_chars is not None and chars + n_chars > c.max_request_chars)
                or (c.max_request_tokens is not None and toks + n_toks > c.max_request_tokens)
            )
            if over:
                chunks.append(cur)
                cur, chars, toks = [], 0, 0
            cur.append(i)
            chars += n_chars
            toks += n_toks
        if cur:
            chunks.append(cur)
        return chunks

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.session.close()

    # ------------------------------------------------------------------ one chunk
    def _run_chunk(self, texts: list[str], query: bool) -> list[Any]:
        try:
            raws = self._request(texts, query)
        except RemoteError as e:
            if len(texts) > 1 and (e.too_large or (e.bisect and self.cfg.isolate_failures)):
                mid = len(texts) // 2
                with self._lock:
                    if e.too_large:
                        # Remember: later requests are planned below the size the service refused.
                        self._max_count = max(1, min(self._max_count, mid))
                        self.stats["split_too_large"] += 1
                    else:
                        self.stats["bisected"] += 1
                log.debug("%s: %s; splitting a batch of %d", self.label, e.reason, len(texts))
                return self._run_chunk(texts[:mid], query) + self._run_chunk(texts[mid:], query)
            return [e] * len(texts)
        return [self._check(raw, i, len(texts)) for i, raw in enumerate(raws)]

    def _request(self, texts: list[str], query: bool) -> list[Any]:
        r = self.cfg.retry
        retrying = Retrying(
            stop=stop_after_attempt(r.attempts),
            wait=_Wait(r.initial_backoff, r.max_backoff, r.jitter, r.max_retry_after),
            retry=retry_if_exception(lambda e: isinstance(e, RemoteError) and e.retryable),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        attempt_no = 0
        try:
            for attempt in retrying:
                attempt_no = attempt.retry_state.attempt_number
                with attempt:
                    return self._send(texts, query)
        except RemoteError as e:
            e.attempts = attempt_no
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        with self._lock:
            self.stats["retries"] += 1
        if getattr(exc, "retry_after", None) is not None:
            self.limiter.pause(wait)  # every thread sharing the limiter waits out the Retry-After
        log.debug("%s: attempt %d failed (%s); retrying in %.2fs", self.label, state.attempt_number, exc, wait)

    # ------------------------------------------------------------------ one HTTP request
    def _send(self, texts: list[str], query: bool) -> list[Any]:
        c = self.cfg
        url, body, headers = self.adapter.request(texts, query=query)
        tokens = sum(estimate_tokens(t, c.chars_per_token) for t in texts)
        self.limiter.acquire(tokens)
        with self.inflight:
            with self._lock:
                self.stats["requests"] += 1
                self._inflight_now += 1
                self.stats["max_inflight"] = max(self.stats["max_inflight"], self._inflight_now)
            try:
                resp = self.session.request(
                    self.adapter.method,
                    url,
                    data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
                    headers={"Content-Type": "application/json", "Accept": "application/json", **headers},
                    auth=self.adapter.auth(),
                    timeout=(c.connect_timeout, c.timeout),
                    verify=self.verify,
                )
                content = resp.content  # read the body inside the timeout and the semaphore
            except requests.Timeout as e:
                raise self._error(
                    f"no response within {c.timeout}s ({type(e).__name__})", reason="timeout", retryable=True
                ) from None
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as e:
                # The exception text holds host, port and path, never headers; redacted all the same.
                raise self._error(
                    f"connection failed: {_short_exc(e)}", reason="connection", retryable=True, bisect=False
                ) from None
            except requests.RequestException as e:
                raise self._error(f"request failed: {_short_exc(e)}", reason="request_error") from None
            finally:
                with self._lock:
                    self._inflight_now -= 1
        return self._parse(resp, content, len(texts))

    def _parse(self, resp: requests.Response, content: bytes, n: int) -> list[Any]:
        status = resp.status_code
        text = content.decode("utf-8", errors="replace")
        if status >= 400:
            msg = error_text(text)[:500]
            too_large = status == 413 or (status in (400, 422) and bool(_TOO_LARGE.search(msg)))
            ra = parse_retry_after(resp.headers.get("Retry-After")) if status in (429, 503) else None
            raise self._error(
                f"HTTP {status} {resp.reason or ''}".rstrip() + (f": {msg}" if msg else ""),
                reason="too_large" if too_large else f"http_{status}",
                status=status,
                retryable=status in RETRY_STATUSES or status >= 500,
                retry_after=ra,
                too_large=too_large,
                fatal=status in FATAL_STATUSES,
                bisect=status not in (429,),
            )
        try:
            payload = json.loads(text)
        except ValueError as e:
            raise self._error(
                f"HTTP {status} with malformed JSON ({e}); body starts {text[:120]!r}",
                reason="bad_response",
                status=status,
                retryable=True,
            ) from None
        try:
            raws = self.adapter.parse(payload, n)
        except RemoteError:
            raise
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise self._error(f"unexpected response shape: {e}", reason="bad_response", status=status) from None
        if not isinstance(raws, list) or len(raws) != n:
            got = len(raws) if isinstance(raws, list) else type(raws).__name__
            raise self._error(f"returned {got} embeddings for {n} texts", reason="bad_response", status=status)
        return raws

    def _error(self, message: str, **kw: Any) -> RemoteError:
        return RemoteError(self.redact(scrub_auth_headers(f"{self.label}: {message}")), **kw)

    # ------------------------------------------------------------------ validation
    def _check(self, raw: Any, i: int, n: int) -> Any:
        """One response item -> float32 vector / sparse map, or a RemoteError saying what is wrong."""
        where = "the embedding" if n == 1 else f"embedding {i + 1} of the {n} in its request"
        if self.kind == "sparse":
            return self._check_sparse(raw, where)
        if not isinstance(raw, list) or not raw:
            return self._invalid(f"{where} is {type(raw).__name__}{' (empty)' if raw == [] else ''}, expected a list of numbers")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in raw):
            bad = next(x for x in raw if not (isinstance(x, (int, float)) and not isinstance(x, bool)))
            return self._invalid(f"{where} contains {bad!r}, expected only numbers")
        arr = np.asarray(raw, dtype=np.float32)
        if not np.all(np.isfinite(arr)):
            return self._invalid(f"{where} contains NaN or infinite values")
        if self.dimension is not None and arr.shape[0] != self.dimension:
            return self._invalid(f"{where} has {arr.shape[0]} dimensions, expected {self.dimension}")
        return arr

    def _check_sparse(self, raw: Any, where: str) -> Any:
        if not isinstance(raw, dict):
            return self._invalid(f"{where} is {type(raw).__name__}, expected a token -> weight map")
        out: dict[str, float] = {}
        for tok, w in raw.items():
            if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w) or w < 0:
                return self._invalid(f"{where}: weight {w!r} for token {tok!r} is not a finite non-negative number")
            if w > 0:
                out[str(tok)] = float(w)
        return out

    def _invalid(self, message: str) -> RemoteError:
        return self._error(message, reason="invalid_vector")


def _short_exc(e: BaseException) -> str:
    """A requests exception without its nested repr noise (pool objects, addresses)."""
    s = str(e)
    m = re.search(r"Caused by \w+\(['\"]?(.*?)['\"]?\)\)?$", s)
    if m:
        s = m.group(1)
    s = re.sub(r"<urllib3\.[^>]+>: ", "", s)
    return s[:300]
