"""Bulk indexing that survives what real clusters do: back-pressure, oversize requests, outages.

- Requests are bounded by document count and bytes.
- 429 / ``es_rejected_execution_exception`` / 503 on an item: only those items are retried, with
  exponential backoff and jitter; items that succeeded are never sent again.
- 413 (request too large): the request is split in half and each half retried.
- The whole cluster unreachable (connection refused, timeout, 502/503/504 on the request): the
  same request is retried until ``outage_deadline`` passes; then its items fail with the reason.
- Any other item error (e.g. a mapping conflict) fails that item only; the rest lands.
"""
from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from opensearchpy import exceptions as os_exc
from tenacity import Retrying, retry_if_exception, wait_exponential_jitter

from neural_ingest.config import BulkConfig

log = logging.getLogger(__name__)

RETRY_ITEM_STATUSES = {429, 503}
RETRY_REQUEST_STATUSES = {429, 502, 503, 504}


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


def make_item(key: Any, index: str, doc_id: str, source: dict[str, Any], op_type: str = "index") -> BulkItem:
    action = json.dumps({op_type: {"_index": index, "_id": doc_id}}, ensure_ascii=False)
    body = json.dumps(source, ensure_ascii=False, allow_nan=False)
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


def _backoff(cfg: BulkConfig, attempt: int) -> float:
    """Exponential backoff with full jitter, so rejected workers do not come back in lockstep."""
    return random.uniform(0, min(cfg.max_backoff, cfg.initial_backoff * 2**attempt))


class BulkWriter:
    def __init__(self, client: Any, cfg: BulkConfig, sleep: Callable[[float], None] = time.sleep):
        self.client = client
        self.cfg = cfg
        self.sleep = sleep
        self.retried_items = 0  # back-pressure retries, for metrics
        self.retried_requests = 0  # request-level retries (outage, 429/5xx on the whole request)
        self.splits = 0  # requests split after a 413
        # When the cluster became unreachable: the deadline counts from the start of the outage, not
        # per request, so a long outage fails the remaining batches at once instead of each waiting anew.
        self._outage_started: float | None = None

    def write(self, items: Sequence[BulkItem]) -> Iterator[BulkResult]:
        for chunk in chunks(items, self.cfg.max_docs, self.cfg.max_bytes):
            yield from self._send(chunk)

    def _request(self, chunk: list[BulkItem]) -> dict[str, Any]:
        """One _bulk call, retried through outages and request-level back-pressure until the deadline."""
        body = b"".join(item.lines for item in chunk)

        def _before_sleep(state) -> None:
            self.retried_requests += 1
            log.warning(
                "bulk request of %d docs failed (%s); retrying for up to %.0fs more",
                len(chunk),
                type(state.outcome.exception()).__name__,
                self.cfg.outage_deadline - (time.monotonic() - (self._outage_started or time.monotonic())),
            )

        def _past_deadline(state) -> bool:
            if self._outage_started is None:
                self._outage_started = time.monotonic()
            return time.monotonic() - self._outage_started >= self.cfg.outage_deadline

        for attempt in Retrying(
            retry=retry_if_exception(_transient),
            stop=_past_deadline,
            wait=wait_exponential_jitter(initial=self.cfg.initial_backoff, max=self.cfg.max_backoff),
            sleep=self.sleep,
            before_sleep=_before_sleep,
            reraise=True,
        ):
            with attempt:
                for it in chunk:
                    it.attempts += 1
                resp = self.client.bulk(body=body, params={"timeout": f"{int(self.cfg.timeout)}s"}, request_timeout=self.cfg.timeout)
                self._outage_started = None
                return resp
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
                reason = "unavailable" if _transient(e) else ("too_large" if e.status_code == 413 else "bulk_request_failed")
                status = e.status_code if isinstance(e.status_code, int) else None
                msg = (
                    f"OpenSearch did not confirm the write within outage_deadline={self.cfg.outage_deadline}s ({type(e).__name__}); "
                    "replay this dead letter once the cluster is back"
                    if reason == "unavailable"
                    else f"{type(e).__name__}: {str(e.error)[:500]}"
                )
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
                reason = err.get("reason") if isinstance(err, dict) else str(err)
                caused = err.get("caused_by", {}).get("reason") if isinstance(err, dict) else None
                yield BulkResult(it, False, status, etype, "; ".join(x for x in (reason, caused) if x)[:2000])
            if retry:
                delay = _backoff(self.cfg, item_retries)
                log.info("%d of %d items rejected (back-pressure); retrying them in %.2fs", len(retry), len(pending), delay)
                self.sleep(delay)
                item_retries += 1
                self.retried_items += len(retry)
            pending = retry
