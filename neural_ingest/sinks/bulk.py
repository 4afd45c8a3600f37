"""Bulk indexing that survives what real clusters do: back-pressure, oversize requests, outages.

- Requests are bounded by document count and bytes.
- 429 / ``es_rejected_execution_exception`` / 503 on an item: only those items are retried, with
  exponential backoff and jitter; items that succeeded are never sent again.
- 413 (request too large): the request is split in half and each half retried.
- A request that fails as a whole (connection refused, timeout, 429/502/503/504 on the request) is
  retried, and the cluster is asked a cheap question (``_cluster/health``) to tell why:
  - it answers: the node is busy, not gone (e.g. building a faiss graph at a flush for minutes):
    retried until ``busy_deadline`` passes, one warning a stall; then its items fail with reason ``busy``;
  - it does not answer: an outage, retried until ``outage_deadline`` passes; then reason ``unavailable``.
  Both clocks run from the first failure of a stall (per writer, so a long one fails the remaining
  batches at once) and stop at the next accepted request. Re-sending is safe: every item is an
  ``index`` action with an explicit ``_id`` (see make_item), so a request that timed out on the client
  but was applied on the server only writes the same documents again.
- Any other item error (e.g. a mapping conflict) fails that item only; the rest lands.
"""
from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from opensearchpy import exceptions as os_exc
from tenacity import Retrying, retry_if_exception, wait_exponential_jitter

from neural_ingest.config import BulkConfig

log = logging.getLogger(__name__)

RETRY_ITEM_STATUSES = {429, 503}
RETRY_REQUEST_STATUSES = {429, 502, 503, 504}
PROBE_TIMEOUT = 10.0  # seconds for the health check that tells a busy node from an unreachable cluster


@dataclass
class BulkItem:
    """One document's bulk action, serialised once."""

    key: Any  # whatever the caller uses to find the document again
    doc_id: str
    lines: bytes  # action line + source line, newline-terminated
    attempts: int = 0


@dataclass
class BulkResult:
    item: BulkItem
    ok: bool
    status: int | None = None
    error_type: str | None = None
    message: str | None = None


_ACTION_JSON = json.JSONEncoder(ensure_ascii=False)  # json.dumps with arguments builds an encoder a call
_SOURCE_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False)


def make_item(key: Any, index: str, doc_id: str, source: dict[str, Any]) -> BulkItem:
    """An ``index`` action with an explicit id: idempotent, so BulkWriter may re-send a request the server
    may already have applied (a client-side timeout); ``create`` would fail the re-sent copy with a 409."""
    action = _ACTION_JSON.encode({"index": {"_index": index, "_id": doc_id}})
    body = _SOURCE_JSON.encode(source)
    return BulkItem(key, doc_id, (action + "\n" + body + "\n").encode("utf-8"))


def chunks(items: Sequence[BulkItem], max_docs: int, max_bytes: int) -> Iterator[list[BulkItem]]:
    """Split into requests of at most ``max_docs`` items and ``max_bytes`` bytes (one item may exceed it alone)."""
    cur: list[BulkItem] = []
    size = 0
    for it in items:
        if cur and (len(cur) >= max_docs or size + len(it.lines) > max_bytes):
            yield cur
            cur, size = [], 0
        cur.append(it)
        size += len(it.lines)
    if cur:
        yield cur


def _transient(err: BaseException) -> bool:
    if isinstance(err, (os_exc.ConnectionError, os_exc.ConnectionTimeout)):
        return True
    return isinstance(err, os_exc.TransportError) and err.status_code in RETRY_REQUEST_STATUSES


def _answered(err: BaseException) -> bool:
    """Whether a failed probe still got an HTTP answer from the cluster (401/403/404/429: it is there, it only
    will not tell this user or is throttling); a connection error, a timeout or a 502/503/504 (a proxy with no
    node behind it, no elected cluster manager) is no answer."""
    if isinstance(err, (os_exc.ConnectionError, os_exc.ConnectionTimeout)):
        return False
    status = getattr(err, "status_code", None)
    return isinstance(status, int) and status not in {502, 503, 504}


def _backoff(cfg: BulkConfig, attempt: int) -> float:
    """Exponential backoff with full jitter, so rejected workers do not come back in lockstep."""
    return random.uniform(0, min(cfg.max_backoff, cfg.initial_backoff * 2**attempt))


class BulkWriter:
    def __init__(self, client: Any, cfg: BulkConfig, sleep: Callable[[float], None] = time.sleep):
        self.client = client
        self.cfg = cfg
        self.sleep = sleep
        self.retried_items = 0  # back-pressure retries, for metrics
        self.retried_requests = 0  # request-level retries (busy node, outage, 429/5xx on the whole request)
        self.splits = 0  # requests split after a 413
        # When the current stall began, per kind: the deadlines count from the start of the stall, not per
        # request, so a long one fails the remaining batches at once instead of each waiting anew. The
        # outage clock runs only while the cluster does not answer at all; the busy clock from the first
        # request a still-answering cluster did not accept. Both stop at the next accepted request.
        self._outage_started: float | None = None
        self._busy_started: float | None = None
        self._stall = "unavailable"  # the last failed request's kind: busy | unavailable
        self._sent_at = 0.0  # when the last request went out

    def write(self, items: Sequence[BulkItem]) -> Iterator[BulkResult]:
        for chunk in chunks(items, self.cfg.max_docs, self.cfg.max_bytes):
            yield from self._send(chunk)

    def _cluster_answers(self) -> bool:
        """A cheap request the node serves off its write path: answered means busy, not down."""
        try:
            self.client.cluster.health(request_timeout=min(PROBE_TIMEOUT, self.cfg.timeout))
            return True
        except os_exc.TransportError as e:
            return _answered(e)
        except os_exc.OpenSearchException:
            return False

    def _deadline_spent(self) -> bool:
        """Classify the failed request (busy / unavailable), advance that stall's clock; True when spent."""
        now = time.monotonic()
        if self._cluster_answers():
            self._stall, self._outage_started = "busy", None
            if self._busy_started is None:
                self._busy_started = self._sent_at  # the stall began when the request that was not accepted went out
            return now - self._busy_started >= self.cfg.busy_deadline
        self._stall = "unavailable"
        if self._outage_started is None:
            self._outage_started = now
        return now - self._outage_started >= self.cfg.outage_deadline

    def _request(self, chunk: list[BulkItem]) -> dict[str, Any]:
        """One _bulk call, retried through busy nodes, outages and request-level back-pressure until the deadline."""
        body = b"".join(item.lines for item in chunk)

        def _before_sleep(state: Any) -> None:
            self.retried_requests += 1
            err = type(state.outcome.exception()).__name__
            now, pause = time.monotonic(), state.next_action.sleep
            if self._stall == "busy":
                log.warning(
                    "bulk request of %d docs not accepted (%s) but the cluster answers: the node is busy, not down; "
                    "waited %.0fs of sink.bulk.busy_deadline=%.0fs, retrying in %.1fs",
                    len(chunk), err, now - (self._busy_started or now), self.cfg.busy_deadline, pause,
                )
            else:
                log.warning(
                    "bulk request of %d docs failed (%s); retrying for up to %.0fs more while the cluster does not answer",
                    len(chunk), err, self.cfg.outage_deadline - (now - (self._outage_started or now)),
                )

        for attempt in Retrying(
            retry=retry_if_exception(_transient),
            stop=lambda state: self._deadline_spent(),
            wait=wait_exponential_jitter(initial=self.cfg.initial_backoff, max=self.cfg.max_backoff),
            sleep=self.sleep,
            before_sleep=_before_sleep,
            reraise=True,
        ):
            with attempt:
                for it in chunk:
                    it.attempts += 1
                self._sent_at = time.monotonic()
                resp = self.client.bulk(
                    body=body, params={"timeout": f"{int(self.cfg.timeout)}s"}, request_timeout=self.cfg.timeout
                )
                self._outage_started = self._busy_started = None
                return cast("dict[str, Any]", resp)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, chunk: list[BulkItem]) -> Iterator[BulkResult]:
        pending = chunk
        item_retries = 0
        while pending:
            try:
                resp = self._request(pending)
            except os_exc.TransportError as e:
                if e.status_code == 413 and len(pending) > 1:
                    half = len(pending) // 2
                    self.splits += 1
                    log.info("bulk request of %d docs too large (413): splitting", len(pending))
                    yield from self._send(pending[:half])
                    yield from self._send(pending[half:])
                    return
                reason = self._stall if _transient(e) else ("too_large" if e.status_code == 413 else "bulk_request_failed")
                status = e.status_code if isinstance(e.status_code, int) else None
                msg = self._failure_message(reason, e)
                for it in pending:
                    yield BulkResult(it, False, status, reason, msg)
                return
            retry: list[BulkItem] = []
            for it, res in zip(pending, resp["items"]):
                info = next(iter(res.values()))
                status = int(info.get("status", 0))
                if 200 <= status < 300:
                    yield BulkResult(it, True, status)
                    continue
                err = info.get("error") or {}
                etype = err.get("type", "bulk_error") if isinstance(err, dict) else "bulk_error"
                if status in RETRY_ITEM_STATUSES or etype == "es_rejected_execution_exception":
                    if item_retries < self.cfg.max_retries:
                        retry.append(it)
                        continue
                    etype = "rejected"
                why = err.get("reason") if isinstance(err, dict) else str(err)
                caused = err.get("caused_by", {}).get("reason") if isinstance(err, dict) else None
                yield BulkResult(it, False, status, etype, "; ".join(x for x in (why, caused) if x)[:2000])
            if retry:
                delay = _backoff(self.cfg, item_retries)
                log.info("%d of %d items rejected (back-pressure); retrying them in %.2fs", len(retry), len(pending), delay)
                self.sleep(delay)
                item_retries += 1
                self.retried_items += len(retry)
            pending = retry

    def _failure_message(self, reason: str, e: os_exc.TransportError) -> str:
        if reason == "busy":
            return (
                f"OpenSearch answered but did not accept the write within busy_deadline={self.cfg.busy_deadline}s "
                f"({type(e).__name__}): the node is busy (e.g. building k-NN graphs); replay this dead letter once it "
                "is idle, or raise sink.bulk.busy_deadline"
            )
        if reason == "unavailable":
            return (
                f"OpenSearch did not confirm the write within outage_deadline={self.cfg.outage_deadline}s ({type(e).__name__}); "
                "replay this dead letter once the cluster is back"
            )
        return f"{type(e).__name__}: {str(e.error)[:500]}"
