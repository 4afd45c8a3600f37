"""The run lock against the real OpenSearch: create-or-409, expiry takeover with optimistic
concurrency (exactly one winner), heartbeat renewal, release only by the holder, waiting."""
from __future__ import annotations

import threading
import time

import pytest

from neural_ingest.sinks.lock import IndexLock, LockHeld, LockLost


class Clock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def lock_index(os_client, index_name) -> str:
    return f"{index_name}-locks"  # deleted with the test's other indices


def test_second_run_is_refused_with_holder_and_expiry(os_client, lock_index):
    a = IndexLock(os_client, "docs", ttl=600, index=lock_index, owner="nightly@host-a pid 1", run_id="run-a")
    a.acquire(heartbeat=False)
    b = IndexLock(os_client, "docs", ttl=600, index=lock_index, owner="manual@host-b pid 2", run_id="run-b")
    with pytest.raises(LockHeld) as err:
        b.acquire()
    msg = str(err.value)
    assert "another run holds the lock for 'docs'" in msg and "nightly@host-a pid 1" in msg and "run-a" in msg
    assert "expires at" in msg and "--wait SECONDS" in msg
    assert err.value.holder["run_id"] == "run-a"
    # another key is independent
    IndexLock(os_client, "other", ttl=600, index=lock_index).acquire(heartbeat=False).release()
    a.release()
    assert a.holder() is None
    b.acquire(heartbeat=False)
    assert b.holder()[0]["run_id"] == "run-b"
    b.release()


def test_expired_lock_is_taken_over_by_exactly_one(os_client, lock_index):
    clock = Clock()
    dead = IndexLock(os_client, "docs", ttl=60, index=lock_index, run_id="crashed", clock=clock)
    dead.acquire(heartbeat=False)  # and never renews: the process "died"
    clock.t += 61
    contenders = [IndexLock(os_client, "docs", ttl=60, index=lock_index, run_id=f"r{i}", clock=clock) for i in range(6)]
    barrier = threading.Barrier(len(contenders))
    outcome: dict[str, object] = {}

    def race(lock: IndexLock) -> None:
        barrier.wait()
        outcome[lock.run_id] = lock.try_acquire()

    threads = [threading.Thread(target=race, args=(c,)) for c in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [r for r, held_by in outcome.items() if held_by is None]
    assert len(winners) == 1, outcome
    assert os_client.get(index=lock_index, id="docs")["_source"]["run_id"] == winners[0]
    # the crashed holder comes back: its renewal fails, and its release does not free the winner's lock
    with pytest.raises(LockLost):
        dead.renew()
    dead.release()
    assert os_client.get(index=lock_index, id="docs")["_source"]["run_id"] == winners[0]
    next(c for c in contenders if c.run_id == winners[0]).release()


def test_heartbeat_keeps_a_long_run_alive(os_client, lock_index):
    a = IndexLock(os_client, "docs", ttl=5, index=lock_index, run_id="long").acquire()  # renews every ~1.7 s
    first = a.holder()[0]["expires_at_ms"]
    time.sleep(6)  # longer than ttl: without renewal it would have expired
    doc = a.holder()[0]
    assert doc["expires_at_ms"] > first and doc["run_id"] == "long"
    with pytest.raises(LockHeld):
        IndexLock(os_client, "docs", ttl=5, index=lock_index).acquire()
    a.release()
    assert a.holder() is None


def test_wait_takes_the_lock_when_the_holder_finishes(os_client, lock_index):
    a = IndexLock(os_client, "docs", ttl=600, index=lock_index, run_id="first").acquire(heartbeat=False)
    threading.Timer(2.0, a.release).start()
    t0 = time.monotonic()
    b = IndexLock(os_client, "docs", ttl=600, index=lock_index, run_id="second").acquire(wait=60, poll=0.2, heartbeat=False)
    assert 1.5 < time.monotonic() - t0 < 30
    assert b.holder()[0]["run_id"] == "second"
    b.release()


def test_wait_gives_up_with_a_clear_message(os_client, lock_index):
    a = IndexLock(os_client, "docs", ttl=600, index=lock_index, owner="holder", run_id="first").acquire(heartbeat=False)
    with pytest.raises(LockHeld, match=r"holder.*gave up after waiting 1 s"):
        IndexLock(os_client, "docs", ttl=600, index=lock_index).acquire(wait=1, poll=0.2)
    a.release()
