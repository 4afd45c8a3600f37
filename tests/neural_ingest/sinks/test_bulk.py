"""BulkWriter against a node that is busy, not down: bulk requests time out while the cluster still
answers a health check (measured: a faiss graph build at a flush stalled a 1 GiB node ~2 min a time, and
two stalls in a row spent the outage deadline: 500 documents dead-lettered `index.unavailable`).

A real server cannot be made to stall on demand, so the node is a fake client here (tests/fake_cluster.py); time
is a fake monotonic clock (the module's ``time``) that the fake's timeouts and the writer's sleeps advance: no
test waits."""
from __future__ import annotations

import logging
import types

import pytest
from fake_cluster import Clock, Node
from opensearchpy import exceptions as os_exc

from neural_ingest.config import BulkConfig
from neural_ingest.sinks import bulk
from neural_ingest.sinks.bulk import BulkWriter, make_item


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(bulk, "time", types.SimpleNamespace(monotonic=c.monotonic, sleep=c.sleep))
    return c


CFG = BulkConfig(timeout=120, outage_deadline=300, busy_deadline=1800, max_docs=500)
ITEMS = [make_item(i, "docs", str(i), {"text": f"t{i}"}) for i in range(500)]


def test_a_busy_node_that_answers_is_waited_for_past_the_outage_deadline(clock, caplog):
    node = Node(clock, stalls=4)  # 4 x 120 s stalls: more than outage_deadline=300 s
    writer = BulkWriter(node, CFG, sleep=clock.sleep)
    with caplog.at_level(logging.WARNING, logger=bulk.__name__):
        results = list(writer.write(ITEMS))
    assert [r for r in results if not r.ok] == [] and len(results) == 500
    assert clock.now - 1000.0 > CFG.outage_deadline and node.bulk_calls == 5 and writer.retried_requests == 4
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4 and all("the node is busy, not down" in line and "busy_deadline=1800s" in line for line in lines)
    assert "waited 120s" in lines[0] and "waited 480s" not in lines[0]  # counted from the first stalled request


def test_the_outage_deadline_still_fails_a_batch_when_nothing_answers(clock):
    node = Node(clock, stalls=None, answers=False)
    results = list(BulkWriter(node, CFG, sleep=clock.sleep).write(ITEMS))
    assert {(r.ok, r.error_type) for r in results} == {(False, "unavailable")} and len(results) == 500
    assert "outage_deadline=300" in results[0].message
    assert clock.now - 1000.0 < CFG.busy_deadline  # the outage clock, not the busy one, ended it


def test_a_wedged_node_is_bounded_by_the_busy_deadline(clock):
    node = Node(clock, stalls=None)
    writer = BulkWriter(node, CFG, sleep=clock.sleep)
    results = list(writer.write(ITEMS))
    assert {(r.ok, r.error_type) for r in results} == {(False, "busy")} and len(results) == 500
    assert "busy_deadline=1800" in results[0].message and "sink.bulk.busy_deadline" in results[0].message
    waited = clock.now - 1000.0
    assert CFG.busy_deadline <= waited <= CFG.busy_deadline + CFG.timeout + CFG.max_backoff
    # The deadline counts per stall, not per request: the next batch gets one try, not another 1800 s.
    before = clock.now
    again = list(writer.write(ITEMS[:10]))
    assert {r.error_type for r in again} == {"busy"} and clock.now - before <= CFG.timeout


def test_an_accepted_request_ends_the_stall(clock):
    """Stalls far apart (each batch stalls once, then lands) never add up to a deadline."""
    writer = BulkWriter(Node(clock, stalls=0), CFG, sleep=clock.sleep)
    for _ in range(20):  # 20 x 120 s of stalls in all: more than busy_deadline
        writer.client.stalls = 1
        assert all(r.ok for r in writer.write(ITEMS[:10]))
    assert clock.now - 1000.0 > CFG.busy_deadline


@pytest.mark.parametrize(
    ("err", "answers"),
    [
        (os_exc.AuthorizationException(403, "security_exception", {}), True),  # there, not allowed to say more
        (os_exc.TransportError(429, "too_many_requests", {}), True),
        (os_exc.NotFoundError(404, "not found", {}), True),  # e.g. a service without _cluster/health
        (os_exc.TransportError(503, "master_not_discovered_exception", {}), False),
        (os_exc.TransportError(502, "bad gateway", {}), False),
        (os_exc.ConnectionTimeout("TIMEOUT", "timed out", None), False),
        (os_exc.ConnectionError("N/A", "refused", None), False),
    ],
)
def test_what_counts_as_an_answer(err, answers):
    assert bulk._answered(err) is answers
