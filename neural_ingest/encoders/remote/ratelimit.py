"""Process-wide rate limits for remote encoders: requests and tokens per minute, and shared pauses.

One :class:`RateLimiter` per key (the endpoint unless ``rate_limit.key`` says otherwise) is shared by
every thread of a worker process, so a limit of 600 requests per minute holds for the process as a
whole however many DoFn threads and request threads call the service. A 429's Retry-After pauses
every thread that uses the limiter, not only the one that got it.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """A token bucket refilled continuously at ``per_minute / 60`` per second.

    ``capacity`` is the burst (default: one second's worth, at least 1). A cost larger than the
    capacity is admitted once the bucket is full and leaves it in debt, so a single large request
    can never wait forever; the debt delays later callers instead.
    """

    def __init__(self, per_minute: float, capacity: float | None = None, clock: Callable[[], float] = time.monotonic):
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, capacity if capacity is not None else self.rate)
        self.level = self.capacity
        self._clock = clock
        self._t = clock()

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self._t) * self.rate)
        self._t = now

    def wait_time(self, cost: float, now: float) -> float:
        """Seconds until ``cost`` can be taken (0 if now)."""
        self._refill(now)
        need = min(cost, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, cost: float) -> None:
        self.level -= cost


class RateLimiter:
    """Requests-per-minute and tokens-per-minute buckets plus a shared "paused until" time."""

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self.requests = TokenBucket(requests_per_minute, clock=clock) if requests_per_minute else None
        self.tokens = TokenBucket(tokens_per_minute, clock=clock) if tokens_per_minute else None
        self._paused_until = 0.0
        self.waited = 0.0  # total seconds callers spent waiting here (for tests and debugging)

    def configure(self, requests_per_minute: float | None, tokens_per_minute: float | None) -> None:
        """Adopt limits (first configuration wins per bucket; later ones may only tighten)."""
        with self._lock:
            if requests_per_minute and (self.requests is None or requests_per_minute / 60 < self.requests.rate):
                self.requests = TokenBucket(requests_per_minute, clock=self._clock)
            if tokens_per_minute and (self.tokens is None or tokens_per_minute / 60 < self.tokens.rate):
                self.tokens = TokenBucket(tokens_per_minute, clock=self._clock)

    def pause(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` (a Retry-After from the service)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def acquire(self, tokens: float = 0.0) -> float:
        """Block until one request of ``tokens`` tokens may go; return the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                wait = max(0.0, self._paused_until - now)
                if self.requests is not None:
                    wait = max(wait, self.requests.wait_time(1, now))
                if self.tokens is not None and tokens:
                    wait = max(wait, self.tokens.wait_time(tokens, now))
                if wait <= 0:
                    if self.requests is not None:
                        self.requests.take(1)
                    if self.tokens is not None and tokens:
                        self.tokens.take(tokens)
                    self.waited += waited
                    return waited
            # Sleep outside the lock; small steps so a pause or refill is noticed promptly.
            step = min(wait, 1.0)
            self._sleep(step)
            waited += step


_LIMITERS: dict[str, RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def shared_limiter(key: str, requests_per_minute: float | None, tokens_per_minute: float | None) -> RateLimiter:
    """The process-wide limiter for ``key``, created on first use."""
    with _LIMITERS_LOCK:
        lim = _LIMITERS.get(key)
        if lim is None:
            lim = _LIMITERS[key] = RateLimiter(requests_per_minute, tokens_per_minute)
        else:
            lim.configure(requests_per_minute, tokens_per_minute)
        return lim
