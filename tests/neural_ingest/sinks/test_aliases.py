"""Timestamped index names, the one-request alias swap, retention and rollback targets (real OpenSearch)."""
from __future__ import annotations

import datetime as dt

import pytest

from neural_ingest.sinks import aliases
from neural_ingest.sinks.base import SinkError


def test_names_sort_by_timestamp_and_never_collide():
    t = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert aliases.new_index_name("docs", t) == "docs-20260102-030405"
    assert aliases.new_index_name("docs", t, {"docs-20260102-030405"}) == "docs-20260102-030405-1"
    assert aliases.new_index_name("docs", t, {"docs-20260102-030405", "docs-20260102-030405-1"}) == "docs-20260102-030405-2"
    names = ["docs-20260102-030406", "docs-20260102-030405-1", "docs-20251231-235959", "docs-20260102-030405"]
    assert sorted(names, key=lambda n: aliases.sort_key("docs", n)) == [
        "docs-20251231-235959", "docs-20260102-030405", "docs-20260102-030405-1", "docs-20260102-030406"]
    # another alias' indices and hand-made ones are not ours
    assert not aliases.is_managed("docs", "docs-v2-20260102-030405")
    assert not aliases.is_managed("docs", "docs-backup")
    assert aliases.is_managed("docs-v2", "docs-v2-20260102-030405")


def test_swap_actions():
    assert aliases.swap_actions("a", "a-2", None) == [{"add": {"index": "a-2", "alias": "a"}}]
    assert aliases.swap_actions("a", "a-2", "a-1") == [
        {"remove": {"index": "a-1", "alias": "a", "must_exist": True}}, {"add": {"index": "a-2", "alias": "a"}}]
    assert aliases.swap_actions("a", "a-2", "a", old_is_concrete=True)[0] == {"remove_index": {"index": "a"}}


def _make(client, name: str, status: str | None = None, docs: int = 0) -> None:
    body: dict = {"settings": {"number_of_replicas": 0}}
    if status:
        body["mappings"] = {"_meta": {aliases.META_KEY: {"status": status}}}
    client.indices.create(index=name, body=body)
    for i in range(docs):
        client.index(index=name, id=str(i), body={"n": i})
    client.indices.refresh(index=name)


def test_swap_is_one_request_and_refuses_a_moved_alias(os_client, index_name):
    alias = index_name
    a, b, c = (f"{alias}-2026010{i}-000000" for i in (1, 2, 3))
    for n, docs in ((a, 1), (b, 2), (c, 3)):
        _make(os_client, n, aliases.VALIDATED, docs)
    assert aliases.live_index(os_client, alias) is None
    aliases.swap(os_client, alias, a, None)
    assert aliases.alias_targets(os_client, alias) == [a]
    aliases.swap(os_client, alias, b, a)
    assert aliases.alias_targets(os_client, alias) == [b] and os_client.count(index=alias)["count"] == 2
    # someone moved the alias meanwhile: the swap fails as a whole (must_exist), the alias is untouched
    with pytest.raises(SinkError, match="no longer points to"):
        aliases.swap(os_client, alias, c, a)
    assert aliases.alias_targets(os_client, alias) == [b]
    # an alias on two indices is refused, not guessed
    os_client.indices.put_alias(index=c, name=alias)
    with pytest.raises(SinkError, match="points to 2 indices"):
        aliases.live_index(os_client, alias)


def test_retention_keeps_newest_live_and_rollback_target(os_client, index_name):
    alias = index_name
    names = [f"{alias}-2026010{i}-000000" for i in range(1, 7)]
    statuses = [aliases.VALIDATED, aliases.VALIDATED, aliases.VALIDATED, aliases.FAILED_VALIDATION, aliases.VALIDATED,
                aliases.FAILED_VALIDATION]
    for n, s in zip(names, statuses):
        _make(os_client, n, s)
    os_client.indices.put_alias(index=names[0], name="someone-elses-alias")  # pinned by another alias
    live = names[4]
    aliases.swap(os_client, alias, live, None)
    # rollback target: newest validated older than live, skipping the failed one
    assert aliases.rollback_target(os_client, alias, live) == names[2]
    kept, deleted = aliases.retention(os_client, alias, 1, live)
    assert kept == [names[0], names[2], names[4], names[5]] and deleted == [names[1], names[3]]
    assert aliases.prune(os_client, alias, 1, live) == [names[1], names[3]]
    assert not os_client.indices.exists(index=names[1]) and os_client.indices.exists(index=names[0])


def test_rollback_goes_to_the_previous_validated_index_once(os_client, index_name):
    alias = index_name
    a, b, c = (f"{alias}-2026010{i}-000000" for i in (1, 2, 3))
    for n in (a, b, c):
        _make(os_client, n, aliases.VALIDATED)
    with pytest.raises(SinkError, match="does not exist"):
        aliases.rollback(os_client, alias)
    aliases.swap(os_client, alias, c, None)
    assert aliases.rollback(os_client, alias)[:2] == (c, b)
    assert aliases.alias_targets(os_client, alias) == [b]
    assert aliases.get_meta(os_client, c)["rolled_back_at"]
    assert aliases.rollback(os_client, alias)[:2] == (b, a)
    with pytest.raises(SinkError, match="no older validated index"):
        aliases.rollback(os_client, alias)
    # a later build's rollback skips the indices that were rolled back from (c and b)
    d = f"{alias}-20260104-000000"
    _make(os_client, d, aliases.VALIDATED)
    aliases.swap(os_client, alias, d, a)
    assert aliases.rollback_target(os_client, alias, d) == a


def _stamp(client, name: str, status: str, run_id: str) -> None:
    client.indices.create(index=name, body={"settings": {"number_of_replicas": 0},
                                            "mappings": {"_meta": {aliases.META_KEY: {"status": status, "run_id": run_id}}}})


def test_unfinished_runs_indices_never_the_live_pinned_or_running_one(os_client, index_name):
    """Indices still building (a killed run) or failed (a crashed run) are unfinished; the live index,
    an index holding any alias, and the index of the run holding the lock never are."""
    alias = index_name
    names = [f"{alias}-2026010{i}-000000" for i in range(1, 9)]
    runs = [(aliases.VALIDATED, "r1"), (aliases.FAILED_VALIDATION, "r2"), (aliases.VALIDATED, "r3"), (aliases.BUILDING, "pinned"),
            (aliases.BUILDING, "live"), (aliases.BUILDING, "killed"), (aliases.FAILED, "crashed"), (aliases.BUILDING, "me")]
    for n, (status, run) in zip(names, runs):
        _stamp(os_client, n, status, run)
    os_client.indices.put_alias(index=names[3], name="someone-elses-alias")
    live = names[4]  # status building, yet the alias points to it (set by hand): never touched
    aliases.swap(os_client, alias, live, None)

    found = aliases.unfinished(os_client, alias, live, running="me")
    assert list(found) == [names[5], names[6]] and found[names[5]]["run_id"] == "killed"
    assert names[7] in aliases.unfinished(os_client, alias, live)  # without a lock holder, "me" would be abandoned
    # retention deletes them whatever keep_last says, and they take none of the keep_last places:
    # kept are the last two finished (the live 4 and 7), the rollback target 2, and 3 (another alias)
    kept, deleted = aliases.retention(os_client, alias, 2, live, running="me")
    assert kept == [names[2], names[3], names[4], names[7]] and deleted == [names[0], names[1], names[5], names[6]]
    assert list(aliases.remove_unfinished(os_client, alias, live, "me")) == [names[5], names[6]]
    assert not os_client.indices.exists(index=names[5]) and os_client.indices.exists(index=live)
    assert aliases.unfinished(os_client, alias, live, "me") == {}
