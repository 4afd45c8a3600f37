"""One run at a time per alias: a lock document in OpenSearch, with an expiry.

- Taking it: ``op_type=create`` of the document ``<lock index>/<key>``; a 409 means someone holds it.
- A holder that died leaves a lock that expires (``expires_at_ms``). An expired lock is taken over
  with optimistic concurrency (``if_seq_no`` / ``if_primary_term``): of several runs that find it
  expired at once, exactly one wins.
- While a run is alive a heartbeat thread renews the expiry every ``ttl / 3`` seconds, so ``ttl``
  bounds how long a crashed run blocks the next one, not how long a run may take. A renewal that
  finds the lock changed marks it ``lost``; callers check that before doing anything irreversible.
- Released (deleted, only if still ours) at the end, also after a failure.

Expiry uses this machine's clock; keep clocks of the machines that run the job in sync (NTP), or
choose a ``ttl`` well above any skew.
"""
from __future__ import annotations

import datetime as dt
import getpass
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from opensearchpy import exceptions as os_exc

from neural_ingest.sinks.base import SinkError

log = logging.getLogger(__name__)

LOCK_INDEX = "neural-ingest-locks"
_LOCK_INDEX_BODY = {
    "settings": {"number_of_shards": 1, "auto_expand_replicas": "0-1"},
    "mappings": {
        "dynamic": False,
        "properties": {
            "key": {"type": "keyword"},
            "owner": {"type": "keyword"},
            "run_id": {"type": "keyword"},
            "expires_at_ms": {"type": "long"},
        },
    },
}


class LockHeld(SinkError):
    """Another run holds the lock; the message names it and when it expires."""

    def __init__(self, message: str, holder: dict[str, Any] | None = None):
        super().__init__(message)
        self.holder = holder or {}


class LockLost(SinkError):
    """The lock was taken over (it expired while this run could not renew it)."""


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="seconds")


def default_owner() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def describe_holder(key: str, holder: dict[str, Any], now_ms: int) -> str:
    left = (int(holder.get("expires_at_ms", 0)) - now_ms) / 1000
    return (
        f"another run holds the lock for {key!r}: {holder.get('owner', '?')}, run {holder.get('run_id', '?')}, "
        f"since {holder.get('acquired_at', '?')}; it expires at {holder.get('expires_at', '?')} "
        f"({f'in {left:.0f} s' if left > 0 else 'now'}) unless that run renews it"
    )


class IndexLock:
    """``with IndexLock(client, "docs", ttl=600).acquire(wait=0): ...``"""

    def __init__(
        self,
        client: Any,
        key: str,
        ttl: float = 600.0,
        *,
        index: str = LOCK_INDEX,
        owner: str | None = None,
        run_id: str | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.client = client
        self.key = key
        self.ttl = float(ttl)
        self.index = index
        self.owner = owner or default_owner()
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.clock = clock
        self.sleep = sleep
        self._seq: tuple[int, int] | None = None  # (seq_no, primary_term) of our last write
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()
        self.lost = False

    # ------------------------------------------------------------------ state
    @property
    def held(self) -> bool:
        return self._seq is not None and not self.lost

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _body(self, acquired_at: str | None = None) -> dict[str, Any]:
        now = self._now_ms()
        exp = now + int(self.ttl * 1000)
        return {
            "key": self.key,
            "owner": self.owner,
            "run_id": self.run_id,
            "acquired_at": acquired_at or _iso(now),
            "expires_at_ms": exp,
            "expires_at": _iso(exp),
        }

    def _ensure_index(self) -> None:
        if self.client.indices.exists(index=self.index):
            return
        try:
            self.client.indices.create(index=self.index, body=_LOCK_INDEX_BODY)
        except os_exc.RequestError as e:
            if e.error != "resource_already_exists_exception":
                raise

    def holder(self) -> tuple[dict[str, Any], int, int] | None:
        """The current lock document with its seq_no and primary_term, or None when free."""
        try:
            got = self.client.get(index=self.index, id=self.key)
        except os_exc.NotFoundError:
            return None
        return got["_source"], got["_seq_no"], got["_primary_term"]

    # ------------------------------------------------------------------ acquire / release
    def try_acquire(self) -> dict[str, Any] | None:
        """Take the lock if free or expired. None on success; else the holder's document."""
        self._ensure_index()
        try:
            res = self.client.index(index=self.index, id=self.key, body=self._body(), op_type="create")
            self._taken(res)
            return None
        except os_exc.ConflictError:
            pass
        current = self.holder()
        if current is None:  # released between our create and our get: try again
            return self.try_acquire()
        doc, seq_no, term = current
        if int(doc.get("expires_at_ms", 0)) > self._now_ms():
            return doc
        try:  # expired: take it over, unless another run does so first
            res = self.client.index(
                index=self.index, id=self.key, body=self._body(), params={"if_seq_no": seq_no, "if_primary_term": term}
            )
        except os_exc.ConflictError:
            again = self.holder()
            return again[0] if again else {"owner": "?", "expires_at_ms": 0}
        log.warning("took over an expired lock for %r from %s (run %s)", self.key, doc.get("owner"), doc.get("run_id"))
        self._taken(res)
        return None

    def _taken(self, res: dict[str, Any]) -> None:
        self._seq = (res["_seq_no"], res["_primary_term"])
        self.lost = False
        log.info("lock %s/%s taken by %s (run %s, ttl %.0fs)", self.index, self.key, self.owner, self.run_id, self.ttl)

    def acquire(self, wait: float = 0.0, poll: float = 2.0, heartbeat: bool = True) -> IndexLock:
        """Take the lock, waiting up to ``wait`` seconds for another run to finish; LockHeld if it does not."""
        deadline = self.clock() + max(wait, 0.0)
        announced = False
        while True:
            doc = self.try_acquire()
            if doc is None:
                if heartbeat:
                    self.start_heartbeat()
                return self
            if self.clock() >= deadline:
                msg = describe_holder(self.key, doc, self._now_ms())
                if wait > 0:
                    msg += f"; gave up after waiting {wait:.0f} s"
                else:
                    msg += "; wait for it with --wait SECONDS"
                raise LockHeld(msg, doc)
            if not announced:
                log.warning("%s; waiting up to %.0f s", describe_holder(self.key, doc, self._now_ms()), wait)
                announced = True
            self.sleep(min(poll, max(deadline - self.clock(), 0.05)))

    def renew(self) -> None:
        """Push the expiry ttl seconds ahead; LockLost if the lock is no longer ours."""
        with self._mutex:
            if self._seq is None or self.lost:
                raise LockLost(f"the lock for {self.key!r} is not held")
            current = self.holder()
            acquired = current[0].get("acquired_at") if current else None
            try:
                res = self.client.index(
                    index=self.index, id=self.key, body=self._body(acquired),
                    params={"if_seq_no": self._seq[0], "if_primary_term": self._seq[1]},
                )
            except (os_exc.ConflictError, os_exc.NotFoundError):
                self.lost = True
                raise LockLost(
                    f"the lock for {self.key!r} was taken over by another run (it expired while this run could not renew it)"
                ) from None
            self._seq = (res["_seq_no"], res["_primary_term"])

    def release(self) -> None:
        self.stop_heartbeat()
        with self._mutex:
            if self._seq is None:
                return
            seq, self._seq = self._seq, None
            if self.lost:
                return
            try:
                self.client.delete(index=self.index, id=self.key, params={"if_seq_no": seq[0], "if_primary_term": seq[1]})
                log.info("lock %s/%s released", self.index, self.key)
            except (os_exc.ConflictError, os_exc.NotFoundError):
                log.warning("lock %s/%s was no longer ours at release", self.index, self.key)
            except os_exc.OpenSearchException as e:  # it expires on its own
                log.warning("could not release lock %s/%s (%s); it expires in %.0f s", self.index, self.key, e, self.ttl)

    # ------------------------------------------------------------------ heartbeat
    def start_heartbeat(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lock-heartbeat-{self.key}", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _beat(self) -> None:
        interval = max(self.ttl / 3, 0.5)
        while not self._stop.wait(interval):
            try:
                self.renew()
            except LockLost as e:
                log.error("%s", e)
                return
            except Exception as e:  # noqa: BLE001 - a blip: the next beat tries again before expiry
                log.warning("could not renew the lock for %r (%s); retrying", self.key, e)

    def check(self) -> None:
        """Raise LockLost unless the lock is still ours (renews it, so it also proves the cluster agrees)."""
        self.renew()

    def __enter__(self) -> IndexLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
