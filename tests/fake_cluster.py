"""A fake OpenSearch client for faults a real server cannot show on demand: a node whose bulk requests stall
(time out) while it still answers a health check, or that rejects items with 429 (back-pressure).

Time is a fake monotonic clock that the fake's timeouts and the writer's sleeps advance: no test waits."""
from __future__ import annotations

import types

from opensearchpy import exceptions as os_exc


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Node:
    """``bulk`` times out ``stalls`` times (None: always), each after the request timeout, then accepts;
    ``cluster.health`` answers while ``answers`` (else: connection refused). The first ``rejects`` accepted
    requests answer every item 429 ``es_rejected_execution_exception``, as a full write queue does."""

    def __init__(self, clock: Clock, stalls: int | None, answers: bool = True, rejects: int = 0) -> None:
        self.clock, self.stalls, self.answers, self.rejects = clock, stalls, answers, rejects
        self.bulk_calls = self.health_calls = 0
        self.bodies: list[bytes] = []
        self.cluster = types.SimpleNamespace(health=self._health)

    def bulk(self, body: bytes, params: dict, request_timeout: float) -> dict:
        self.bulk_calls += 1
        if self.stalls is None or self.stalls > 0:
            self.stalls = None if self.stalls is None else self.stalls - 1
            self.clock.now += request_timeout
            raise os_exc.ConnectionTimeout("TIMEOUT", f"Read timed out. (read timeout={request_timeout})", None)
        self.bodies.append(body)
        n = body.count(b"\n") // 2
        if self.rejects > 0:
            self.rejects -= 1
            error = {"type": "es_rejected_execution_exception", "reason": "rejected execution (queue capacity 1)"}
            return {"errors": True, "items": [{"index": {"status": 429, "error": error}} for _ in range(n)]}
        return {"errors": False, "items": [{"index": {"status": 201}} for _ in range(n)]}

    def _health(self, request_timeout: float) -> dict:
        self.health_calls += 1
        if not self.answers:
            raise os_exc.ConnectionError("N/A", "Connection refused", None)
        return {"status": "green"}

    def close(self) -> None:
        pass
