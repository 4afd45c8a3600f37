"""Nightly reindexing against the real OpenSearch and the real all-MiniLM-L6-v2:

- an alias-reading client never sees an error or a partial index while reindex runs;
- an unchanged corpus encodes 0 documents; 1% changed encodes that 1% and the alias serves it;
- documents deleted from the source are gone; a model identity change rebuilds in full;
- a failing validation leaves the alias untouched (exit 4); rollback; retention;
- the shrink guard: a truncated export never replaces the live index (exit 4) unless --allow-shrink;
- indices left by killed or crashed runs are removed by the next run, never the live one or its rollback target;
- two concurrent runs: the second exits clearly (exit 5) or waits for the first.
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner
from support import EncodeGate, synthetic_docs, write_jsonl

from neural_ingest.cli import main
from neural_ingest.pipelines.reindex import reindex, rollback
from neural_ingest.sinks import aliases

_HELD: list = []  # loaded models kept for the session, so each in-process run reuses them


def _hold(cfg) -> None:
    from neural_ingest.encoders import make_encoder

    _HELD.extend(make_encoder(c).acquire() for c in cfg.encoders)


@pytest.fixture
def reindex_config(make_config, index_name, tmp_path):
    """make_config for reindex: alias = index_name, a lock index of its own (cleaned up with it)."""

    def _make(docs: list[dict], overrides: dict | None = None, name: str = "docs.jsonl"):
        path = write_jsonl(tmp_path / name, docs)
        cfg = make_config(source_path=path, sink="opensearch", index=index_name, overrides={
            "reindex": {"keep_last": 2, "lock_ttl": 30, "lock_index": f"{index_name}-locks"},
            "encoders.0.batch_size": 16, **(overrides or {})})
        _hold(cfg)
        return cfg

    return _make


def _ids(client, index: str) -> set[str]:
    client.indices.refresh(index=index)
    res = client.search(index=index, body={"size": 10000, "_source": False, "query": {"match_all": {}}})
    return {h["_id"] for h in res["hits"]["hits"]}


class AliasReader(threading.Thread):
    """Queries the alias non-stop (count + a k-NN query) and records anything but a full old/new index."""

    def __init__(self, client, alias: str, vector: list[float]):
        super().__init__(daemon=True)
        self.client, self.alias, self.vector = client, alias, vector
        self.stop = threading.Event()
        self.counts: list[int] = []
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.counts.append(int(self.client.count(index=self.alias)["count"]))
                hits = self.client.search(index=self.alias, body={
                    "size": 5, "_source": False, "query": {"knn": {"embedding": {"vector": self.vector, "k": 5}}}})
                if not hits["hits"]["hits"]:
                    self.errors.append("a k-NN query found nothing")
            except Exception as e:  # noqa: BLE001 - any error a reader sees is a failure of the test
                self.errors.append(f"{type(e).__name__}: {e}")
            time.sleep(0.02)


@pytest.mark.knn
def test_nightly_cycle_incremental_blue_green(os_client, index_name, reindex_config, st_model, knn_engine):
    """Per engine; on OpenSearch 3.x the reused vectors are read back from derived source."""
    alias = index_name
    docs = synthetic_docs(200, prefix="n")
    engine = {"sink.knn.engine": knn_engine}
    cfg = reindex_config(docs, overrides=engine)

    first = reindex(cfg)
    assert first.status == "swapped" and first.plan.mode == "full"
    s = first.summary
    assert (s.read, s.encoded, s.indexed, s.reused, s.deleted) == (200, 200, 200, 0, 0) and s.reconciles
    a = first.plan.new_index
    assert aliases.alias_targets(os_client, alias) == [a] and os_client.count(index=alias)["count"] == 200
    stamp = os_client.get(index=a, id="n-0001")["_source"]["neural_ingest"]
    assert stamp["model"] == first.plan.model_hash and len(stamp["content_sha256"]) == 64
    meta = aliases.get_meta(os_client, a)
    assert meta["status"] == aliases.VALIDATED and meta["model_identity"]["fields"]["embedding"]["dimension"] == 384
    assert {c.name for c in first.validation.checks} == {"count", "shrink", "dead_letters", "self_retrieval", "recall"}

    reader = AliasReader(os_client, alias, st_model.encode("volcanoes and lava").tolist())
    reader.start()
    try:
        # night 2: nothing changed -> nothing encoded, every vector reused
        second = reindex(cfg)
        s = second.summary
        assert second.status == "swapped" and second.plan.mode == "incremental"
        assert (s.read, s.encoded, s.reused, s.indexed, s.deleted) == (200, 0, 200, 200, 0)
        assert s.encoded_by_field == {"embedding": 0} and s.reconciles
        b = second.plan.new_index
        va = os_client.get(index=a, id="n-0042")["_source"]["embedding"]
        vb = os_client.get(index=b, id="n-0042")["_source"]["embedding"]
        assert va == vb  # the very same vector, carried forward

        # night 3: 1% changed (2 of 200), 4 deleted from the source, metadata of one changed
        changed = {"n-0010": "Underwater basalt pillows form where lava meets cold seawater.",
                   "n-0150": "A sourdough starter is a living culture of wild yeast and lactobacilli."}
        gone = {"n-0003", "n-0077", "n-0120", "n-0199"}
        night3 = []
        for original in docs:
            if original["id"] in gone:
                continue
            d = dict(original)
            if d["id"] in changed:
                d["body"] = changed[d["id"]]
            if d["id"] == "n-0020":
                d["year"] = 2031  # metadata only: no re-encoding needed, but the new index has it
            night3.append(d)
        cfg3 = reindex_config(night3, overrides=engine, name="night3.jsonl")
        third = reindex(cfg3)
        s = third.summary
        assert third.status == "swapped"
        assert (s.read, s.encoded, s.reused, s.indexed, s.deleted) == (196, 2, 194, 196, 4) and s.reconciles
    finally:
        reader.stop.set()
        reader.join(30)
    assert not reader.errors, reader.errors[:5]
    assert len(reader.counts) > 20 and set(reader.counts) <= {200, 196}, sorted(set(reader.counts))

    c = third.plan.new_index
    assert aliases.alias_targets(os_client, alias) == [c]
    assert _ids(os_client, alias) == {d["id"] for d in night3}
    got = os_client.get(index=alias, id="n-0010")["_source"]
    assert changed["n-0010"] in got["text"]
    assert os_client.get(index=alias, id="n-0020")["_source"]["year"] == 2031
    # the alias serves the new content: the changed text finds its document first
    q = st_model.encode(f"{docs[10]['title']}\n\n{changed['n-0010']}").tolist()
    hit = os_client.search(
        index=alias, body={"size": 1, "query": {"knn": {"embedding": {"vector": q, "k": 100}}}}
    )  # k: HNSW window
    assert hit["hits"]["hits"][0]["_id"] == "n-0010"
    new_vec = np.asarray(os_client.get(index=alias, id="n-0010")["_source"]["embedding"])
    assert not np.allclose(new_vec, os_client.get(index=b, id="n-0010")["_source"]["embedding"])

    # keep_last 2: a is gone; b stays (newest two, and the rollback target)
    assert third.deleted_indices == [a] and not os_client.indices.exists(index=a)
    # rollback: the alias goes back to b in one request, with its 200 documents
    r = rollback(cfg3)
    assert (r.from_index, r.to_index) == (c, b)
    assert aliases.alias_targets(os_client, alias) == [b] and os_client.count(index=alias)["count"] == 200


def test_model_identity_change_rebuilds_in_full(os_client, index_name, reindex_config):
    docs = synthetic_docs(24, prefix="m")
    cfg = reindex_config(docs)
    first = reindex(cfg)
    assert first.summary.encoded == 24
    # a different max_seq_length produces different vectors: nothing may be reused
    cfg2 = reindex_config(docs, overrides={"encoders.0.max_seq_length": 64})
    second = reindex(cfg2)
    assert second.plan.mode == "full" and "model identity changed" in second.plan.reason
    s = second.summary
    assert (s.encoded, s.reused, s.indexed, s.deleted) == (24, 0, 24, 0)
    assert second.plan.model_hash != first.plan.model_hash
    # batch size is not part of the identity: the next run is incremental again
    cfg3 = reindex_config(docs, overrides={"encoders.0.max_seq_length": 64, "encoders.0.batch_size": 4})
    assert reindex(cfg3).summary.encoded == 0


def test_changed_index_settings_are_not_cloned_but_rebuilt(os_client, index_name, reindex_config):
    """A clone keeps the live index's mapping: a night whose config asks for other HNSW parameters must
    build a new index with them, then clone again once they are stable."""
    docs = synthetic_docs(20, prefix="h")
    reindex(reindex_config(docs))
    changed = reindex(reindex_config(docs, overrides={"sink.knn.m": 24}))
    assert changed.status == "swapped" and changed.plan.mode == "full" and "settings or mapping" in changed.plan.reason
    assert changed.summary.encoded == 20
    mapping = os_client.indices.get_mapping(index=changed.plan.new_index)[changed.plan.new_index]["mappings"]
    assert mapping["properties"]["embedding"]["method"]["parameters"]["m"] == 24
    again = reindex(reindex_config(docs, overrides={"sink.knn.m": 24}))
    assert again.plan.mode == "incremental" and "_clone" in again.plan.reason and again.summary.encoded == 0


def test_failed_validation_leaves_the_alias_untouched(os_client, index_name, reindex_config, tmp_path):
    alias = index_name
    docs = synthetic_docs(30, prefix="v")
    cfg = reindex_config(docs)
    live = reindex(cfg).plan.new_index
    # the next night's source has broken records: dead letters over budget, count short of the source
    rows = [*docs, "{broken json", '{"id": "no-text"}']
    path = write_jsonl(tmp_path / "broken.jsonl", rows)
    conf = tmp_path / "c.json"
    conf.write_text(cfg.model_copy(update={"source": cfg.source.model_copy(update={"path": str(path)})}).model_dump_json())
    r = CliRunner().invoke(main, ["reindex", str(conf), "--set", "run.max_failed=0", "--summary", str(tmp_path / "s.json")])
    assert r.exit_code == 4, r.output
    assert "validation failed" in r.output and f"still points to {live}" in r.output
    assert "validation dead_letters: FAILED" in r.output and "validation count: FAILED" in r.output
    assert aliases.alias_targets(os_client, alias) == [live] and os_client.count(index=alias)["count"] == 30
    summary = json.loads((tmp_path / "s.json").read_text())
    kept = summary["reindex"]["new_index"]
    assert summary["reindex"]["status"] == "validation_failed" and summary["failed"] == 2
    assert os_client.indices.exists(index=kept)  # kept for inspection
    assert aliases.get_meta(os_client, kept)["status"] == aliases.FAILED_VALIDATION
    # a rollback never goes to a failed build, and the dry run says what would happen
    r = CliRunner().invoke(main, ["reindex", str(conf), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert f"alias:       {alias} -> {live}" in r.output and "incremental" in r.output and "lock:        free" in r.output


def test_concurrent_runs_exit_clearly_or_wait(os_client, index_name, reindex_config, tmp_path, monkeypatch):
    docs = synthetic_docs(120, prefix="c")
    cfg = reindex_config(docs)
    conf = tmp_path / "c.json"
    conf.write_text(cfg.model_dump_json())
    outcome: dict = {}

    def first_run() -> None:
        try:
            outcome["first"] = reindex(cfg)
        except BaseException as e:  # noqa: BLE001
            outcome["error"] = e

    # the first run is held at its first encode call (it has the lock by then), so the second run
    # meets the lock however fast the machine is
    gate = EncodeGate(monkeypatch, open_calls=0)
    t = threading.Thread(target=first_run, daemon=True)
    t.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the first run holds the lock and is encoding
        assert "error" not in outcome, outcome.get("error")
        try:
            if gate.held.is_set() and os_client.get(index=f"{index_name}-locks", id=index_name, ignore=[404]).get("found"):
                break
        except Exception:  # noqa: BLE001 - the lock index may not exist yet
            pass
        time.sleep(0.1)
    else:
        pytest.fail("the first run never took the lock")

    try:
        r = CliRunner().invoke(main, ["reindex", str(conf)])
        assert r.exit_code == 5, r.output
        assert f"another run holds the lock for '{index_name}'" in r.output and "expires at" in r.output
        assert "--wait SECONDS" in r.output
        r = CliRunner().invoke(main, ["rollback", str(conf)])
        assert r.exit_code == 5 and "another run holds the lock" in r.output
    finally:
        gate.release()

    # a run that waits starts once the first has finished, and finds nothing to encode
    r = CliRunner().invoke(main, ["reindex", str(conf), "--wait", "600", "--summary", str(tmp_path / "s.json")])
    t.join(600)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["first"].status == "swapped"
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["encoded"] == 0 and s["reused"] == 120 and s["reindex"]["status"] == "swapped"
    assert os_client.get(index=f"{index_name}-locks", id=index_name, ignore=[404])["found"] is False


def test_reindex_from_an_opensearch_source(os_client, opensearch_url, index_name, reindex_config):
    """Re-embed an existing index (read with PIT + slices) into a blue/green alias."""
    from opensearchpy import helpers

    old = f"{index_name}-legacy"
    docs = synthetic_docs(30, prefix="o")
    os_client.indices.create(index=old, body={"settings": {"number_of_shards": 2, "number_of_replicas": 0}})
    helpers.bulk(os_client, ({"_index": old, "_id": d["id"], **{k: v for k, v in d.items() if k != "id"}} for d in docs),
                 refresh=True)
    cfg = reindex_config(docs, overrides={"source": {
        "type": "opensearch", "hosts": [opensearch_url], "index": old, "text_fields": ["title", "body"],
        "metadata_fields": ["topic"]}})
    first = reindex(cfg)
    assert first.status == "swapped" and first.summary.encoded == 30
    os_client.delete(index=old, id="o-0005", refresh=True)
    second = reindex(cfg)
    s = second.summary
    assert (s.read, s.encoded, s.reused, s.deleted) == (29, 0, 29, 1)
    assert _ids(os_client, index_name) == {d["id"] for d in docs} - {"o-0005"}


def test_reindex_needs_opensearch_and_a_free_alias_name(os_client, index_name, reindex_config, make_config):
    from neural_ingest.pipelines.reindex import ReindexError, settings

    with pytest.raises(ReindexError, match=r"sink\.type: opensearch"):
        settings(make_config(sink="parquet"))
    os_client.indices.create(index=index_name)  # a real index already has the alias' name
    cfg = reindex_config(synthetic_docs(5))
    with pytest.raises(ReindexError, match="is an index, not an alias"):
        reindex(cfg)
    # --replace-index: built, validated, and the old index removed in the swap request itself
    res = reindex(cfg, replace_index=True)
    assert res.status == "swapped" and res.plan.swap_actions[0] == {"remove_index": {"index": index_name}}
    assert aliases.alias_targets(os_client, index_name) == [res.plan.new_index]


# --------------------------------------------------------------------------- the shrink guard
def _conf(tmp_path, cfg, docs: list, name: str):
    """A config file whose source is ``docs`` (for CLI runs)."""
    path = write_jsonl(tmp_path / f"{name}.jsonl", docs)
    conf = tmp_path / f"{name}.json"
    conf.write_text(cfg.model_copy(update={"source": cfg.source.model_copy(update={"path": str(path)})}).model_dump_json())
    return conf


def test_shrink_guard_keeps_the_live_index_unless_allowed(os_client, index_name, reindex_config, tmp_path):
    """A truncated export (4 documents instead of 60) passes the source count, but never replaces the live index."""
    alias = index_name
    docs = synthetic_docs(60, prefix="k")
    cfg = reindex_config(docs)
    live = reindex(cfg).plan.new_index
    truncated = _conf(tmp_path, cfg, docs[:4], "truncated")

    r = CliRunner().invoke(main, ["reindex", str(truncated), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert (f"shrink:      live index {live} has 60 documents; the new index needs at least 54 (max_deleted_ratio 0.1) "
            "and at least min_documents 1; --allow-shrink waives it") in r.output

    r = CliRunner().invoke(main, ["reindex", str(truncated), "--summary", str(tmp_path / "s.json")])
    assert r.exit_code == 4, r.output
    assert "validation count: ok" in r.output and "validation shrink: FAILED" in r.output
    assert f"still points to {live}" in r.output
    new = json.loads((tmp_path / "s.json").read_text())["reindex"]["new_index"]
    error = next(line for line in r.output.splitlines() if line.startswith("Error: validation failed"))
    assert f"live index {live}: 60 documents, new index {new}: 4 documents; 56 (93.3%) would vanish" in error
    assert "max_deleted_ratio 0.1" in error and "--allow-shrink" in error
    assert aliases.alias_targets(os_client, alias) == [live] and os_client.count(index=alias)["count"] == 60
    assert aliases.get_meta(os_client, new)["status"] == aliases.FAILED_VALIDATION  # kept for inspection

    # a drop within max_deleted_ratio (6 of 60 = 10%) swaps as before
    within = reindex(reindex_config(docs[:54], name="within.jsonl"))
    assert within.status == "swapped" and os_client.count(index=alias)["count"] == 54
    # a planned drop: --allow-shrink swaps, and the check says why it passed
    r = CliRunner().invoke(main, ["reindex", str(truncated), "--allow-shrink"])
    assert r.exit_code == 0, r.output
    assert "validation shrink: ok" in r.output and "allowed by --allow-shrink" in r.output
    assert os_client.count(index=alias)["count"] == 4


def test_a_refresh_that_outlasts_its_timeout_is_a_problem_to_fix():
    """A big faiss load builds its graphs in the refresh, past a request's usual 120 s: the refresh gets
    sink.bulk.refresh_timeout, and outlasting it is exit 2 naming the setting, not a crash (exit 1). A real node
    cannot be made that slow on demand, so the client is a stand-in."""
    from opensearchpy import ConnectionTimeout

    from neural_ingest import exit_codes
    from neural_ingest.pipelines.reindex import refresh

    asked = {}

    class Indices:
        def refresh(self, index, request_timeout):
            asked.update(index=index, timeout=request_timeout)
            raise ConnectionTimeout("TIMEOUT", "Read timed out. (read timeout=1800)", None)

    class Client:
        indices = Indices()

    with pytest.raises(Exception) as caught:
        refresh(Client(), "docs-2026", 1800.0)
    assert asked == {"index": "docs-2026", "timeout": 1800.0}
    assert "sink.bulk.refresh_timeout" in str(caught.value) and "alias is unchanged" in str(caught.value)
    assert exit_codes.exit_code_for(caught.value) == exit_codes.USER


def test_shrink_check_thresholds():
    from neural_ingest.config import ReindexValidationConfig
    from neural_ingest.pipelines.reindex import shrink_check

    v = ReindexValidationConfig()
    assert (v.max_deleted_ratio, v.min_documents) == (0.1, 1)
    assert shrink_check("new", 270, "live", 300, v).ok  # exactly 10% gone
    c = shrink_check("new", 269, "live", 300, v)
    assert not c.ok and "live index live: 300 documents, new index new: 269 documents; 31 (10.3%) would vanish" in c.detail
    assert "--allow-shrink" in c.detail
    assert shrink_check("new", 269, "live", 300, v, allow_shrink=True).ok
    assert shrink_check("new", 500, "live", 300, v).ok  # growth is never a shrink
    # first run: no live index, max_deleted_ratio does not apply; min_documents does
    assert shrink_check("new", 4, None, None, v).ok
    strict = ReindexValidationConfig(min_documents=10, max_deleted_ratio=1)
    c = shrink_check("new", 4, None, None, strict)
    assert not c.ok and "fewer than reindex.validation.min_documents (10)" in c.detail
    assert shrink_check("new", 4, "live", 300, strict, allow_shrink=True).ok
    assert not shrink_check("new", 0, "live", 300, strict).ok
    assert shrink_check("new", 10, "live", 0, v).ok  # an empty live index: nothing can vanish


# --------------------------------------------------------------------------- runs that did not finish
def _leave_unfinished(cfg, client, run_id: str, status: str, docs: int) -> str:
    """An index as a run killed (status building) or crashed (status failed) after filling part of it
    leaves it: planned, created and stamped by reindex's own functions, never validated or swapped."""
    from neural_ingest.fingerprint import identity_hash, model_identity
    from neural_ingest.pipelines.ingest import prepare
    from neural_ingest.pipelines.reindex import create_index, plan_reindex

    prep = prepare(cfg)
    plan = plan_reindex(cfg, client, prep.fields)
    new_cfg = cfg.model_copy(update={"sink": cfg.sink.model_copy(update={"index": plan.new_index})})
    prep = prepare(new_cfg)
    meta = {"alias": plan.alias, "status": aliases.BUILDING, "run_id": run_id, "created_at": "2026-01-01T00:00:00+00:00",
            "mode": plan.mode, "built_from": plan.live, "model_hash": identity_hash(model_identity(cfg, prep.fields))}
    create_index(prep, client, plan.new_index, meta, run_id)
    for i in range(docs):
        client.index(index=plan.new_index, id=f"half-{i}", body={"text": f"half built {i}"})
    if status != aliases.BUILDING:
        aliases.update_meta(client, plan.new_index, status=status, error="RuntimeError: crashed")
    return plan.new_index


def test_indices_of_runs_that_did_not_finish_are_removed(os_client, index_name, reindex_config, tmp_path):
    from neural_ingest.sinks.lock import IndexLock

    alias = index_name
    docs = synthetic_docs(20, prefix="u")
    cfg = reindex_config(docs)
    target = reindex(cfg).plan.new_index
    live = reindex(cfg).plan.new_index
    killed = _leave_unfinished(cfg, os_client, "killed-run", aliases.BUILDING, 3)
    crashed = _leave_unfinished(cfg, os_client, "crashed-run", aliases.FAILED, 2)
    assert aliases.get_meta(os_client, killed)["status"] == aliases.BUILDING
    # the killed run's lock is still there, expired (its heartbeat stopped with it)
    IndexLock(os_client, alias, 5, index=f"{alias}-locks", run_id="killed-run",
              clock=lambda: time.time() - 3600).acquire(heartbeat=False)

    echoed: list[str] = []
    res = reindex(cfg, summary_path=str(tmp_path / "s.json"), echo=echoed.append)
    assert res.status == "swapped"
    assert not os_client.indices.exists(index=killed) and not os_client.indices.exists(index=crashed)
    assert res.removed_unfinished == [killed, crashed]
    assert any(x.startswith("removed indices left by runs that did not finish: ") and killed in x for x in echoed)
    assert json.loads((tmp_path / "s.json").read_text())["reindex"]["removed_unfinished"] == [killed, crashed]
    # the live index of before is now the rollback target; the one before it goes by keep_last 2 only
    assert aliases.alias_targets(os_client, alias) == [res.plan.new_index]
    assert os_client.indices.exists(index=live) and res.deleted_indices == [target]
    assert rollback(cfg).to_index == live

    # the dry run names what the next run removes, but not the index of a run that holds the lock now
    again = _leave_unfinished(cfg, os_client, "killed-again", aliases.BUILDING, 1)
    running = _leave_unfinished(cfg, os_client, "running-now", aliases.BUILDING, 1)
    IndexLock(os_client, alias, 600, index=f"{alias}-locks", run_id="running-now").acquire(heartbeat=False)
    conf = tmp_path / "c.json"
    conf.write_text(cfg.model_dump_json())
    r = CliRunner().invoke(main, ["reindex", str(conf), "--dry-run"])
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if "unfinished:" in x)
    assert f"{again} (building, run killed-again" in line and running not in line and live not in line


def test_a_reindex_that_crashes_still_writes_its_summary(os_client, index_name, reindex_config, tmp_path, monkeypatch):
    """A bug mid-build: exit 1, the summary (status failed, the error, the config path) written, the alias
    untouched and the half-built index stamped failed, so the next run removes it."""
    from neural_ingest.transforms.prepare import PrepareFn
    from neural_ingest.transforms.stamps_join import JoinStampsFn

    alias = index_name
    cfg = reindex_config(synthetic_docs(10, prefix="c"))
    live = reindex(cfg).plan.new_index

    def boom(self, record):  # around the per-record isolation: a failing record would only be a dead letter
        raise RuntimeError("simulated bug in prepare")

    monkeypatch.setattr(PrepareFn, "process", boom)
    monkeypatch.setattr(JoinStampsFn, "process", boom)  # a night from the manifest parses no unchanged line
    conf = tmp_path / "c.json"
    conf.write_text(cfg.model_dump_json())
    r = CliRunner().invoke(main, ["reindex", str(conf), "--summary", str(tmp_path / "s.json")])
    assert r.exit_code == 1, r.output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (summary["status"], summary["exit_code"], summary["config_path"]) == ("failed", 1, str(conf))
    assert "simulated bug in prepare" in summary["error"]
    assert aliases.alias_targets(os_client, alias) == [live]
    failed = [i for i in os_client.indices.get(index=f"{alias}-*") if i != live and not i.endswith("-locks")]
    assert len(failed) == 1 and aliases.get_meta(os_client, failed[0])["status"] == aliases.FAILED


# --------------------------------------------------------------------------- the clone path (reindex at scale)
def _writes(client, index: str) -> tuple[int, int]:
    """(documents indexed, documents deleted) on ``index`` since it was created (a clone starts at 0, 0)."""
    stats = client.indices.stats(index=index, metric="indexing")["indices"][index]["primaries"]["indexing"]
    return stats["index_total"], stats["delete_total"]


def _write_block(client, index: str) -> str | None:
    got = client.indices.get_settings(index=index, params={"flat_settings": "true"})[index]["settings"]
    return got.get("index.blocks.write")


def test_unchanged_night_writes_nothing_but_swaps_a_validated_clone(os_client, index_name, reindex_config):
    alias = index_name
    docs = synthetic_docs(40, prefix="z")
    cfg = reindex_config(docs)
    live = reindex(cfg).plan.new_index
    res = reindex(cfg)
    new, s = res.plan.new_index, res.summary
    assert res.status == "swapped" and res.plan.mode == "incremental" and "_clone" in res.plan.reason
    assert (s.read, s.encoded, s.reused, s.indexed, s.deleted) == (40, 0, 40, 40, 0) and s.reconciles
    assert _writes(os_client, new) == (0, 0)  # not one document written or deleted: the clone holds them all
    settings = os_client.indices.get_settings(index=new, params={"flat_settings": "true"})[new]["settings"]
    assert settings["index.resize.source.name"] == live
    # validated like any new index, with its own stamp; the write block is gone from both indices
    meta = aliases.get_meta(os_client, new)
    assert meta["status"] == aliases.VALIDATED and meta["run_id"] != aliases.get_meta(os_client, live)["run_id"]
    assert {c.name for c in res.validation.checks} == {"count", "shrink", "dead_letters", "self_retrieval", "recall"}
    assert all(c.ok for c in res.validation.checks)
    assert _write_block(os_client, live) is None and _write_block(os_client, new) is None
    assert aliases.alias_targets(os_client, alias) == [new] and os_client.count(index=alias)["count"] == 40
    assert os_client.get(index=new, id="z-0007")["_source"] == os_client.get(index=live, id="z-0007")["_source"]


def test_changed_night_writes_only_the_changes_and_never_touches_the_live_index(os_client, index_name, reindex_config):
    """1 text changed, 1 metadata-only change, 3 gone, 1 new of 100: 3 written (2 encoded, 1 with its stored
    vector), 3 deleted from the clone, the live index as it was."""
    docs = synthetic_docs(100, prefix="w")
    cfg = reindex_config(docs)
    live = reindex(cfg).plan.new_index
    live_vec = os_client.get(index=live, id="w-0020")["_source"]["embedding"]
    gone = {"w-0003", "w-0050", "w-0099"}
    night = [dict(d) for d in docs if d["id"] not in gone]
    by_id = {d["id"]: d for d in night}
    by_id["w-0010"]["body"] = "Underwater basalt pillows form where lava meets cold seawater."
    by_id["w-0020"]["topic"] = "a new topic"  # metadata only
    night.append(
        {"id": "w-new", "title": "A new note", "body": "Sourdough starters are cultures of wild yeast.", "topic": "bread"}
    )
    res = reindex(reindex_config(night, name="night.jsonl"))
    new, s = res.plan.new_index, res.summary
    assert res.status == "swapped" and res.plan.mode == "incremental"
    assert (s.read, s.encoded, s.reused, s.indexed, s.deleted) == (98, 2, 96, 98, 3) and s.reconciles
    # written: the changed text, the new document and the metadata-only change; deleted: the 3 gone and the
    # 2 documents written again (a write that failed would leave them absent, as in a fresh index, never stale)
    assert _writes(os_client, new) == (3, 5)
    assert _ids(os_client, new) == {d["id"] for d in night}
    got = os_client.get(index=new, id="w-0020")["_source"]
    assert got["topic"] == "a new topic" and got["embedding"] == live_vec  # no re-encoding: the stored vector
    assert (
        os_client.get(index=new, id="w-0010")["_source"]["embedding"]
        != os_client.get(index=live, id="w-0010")["_source"]["embedding"]
    )
    # the live index is never written: all 100, the old texts, no write block left
    assert _writes(os_client, live) == (100, 0) and os_client.count(index=live)["count"] == 100
    assert os_client.get(index=live, id="w-0020")["_source"]["topic"] == docs[20]["topic"]
    assert os_client.get(index=live, id="w-0050", ignore=[404])["found"] and _write_block(os_client, live) is None
    # the next night, unchanged, writes nothing again
    again = reindex(reindex_config(night, name="night.jsonl"))
    assert (again.summary.encoded, again.summary.reused) == (0, 98) and _writes(os_client, again.plan.new_index) == (0, 0)


def test_a_crash_mid_night_leaves_the_live_index_and_alias_intact(os_client, index_name, reindex_config, monkeypatch):
    from neural_ingest.transforms.clone_night import ChangesOnlyFn

    alias = index_name
    docs = synthetic_docs(30, prefix="x")
    cfg = reindex_config(docs)
    live = reindex(cfg).plan.new_index

    def boom(self, doc, todo):
        raise RuntimeError("simulated crash mid-night")

    monkeypatch.setattr(ChangesOnlyFn, "process", boom)
    night = [*docs[:29], {**docs[29], "body": "changed"}]
    with pytest.raises(Exception, match="simulated crash mid-night"):
        reindex(reindex_config(night, name="night.jsonl"))
    assert aliases.alias_targets(os_client, alias) == [live] and os_client.count(index=alias)["count"] == 30
    assert _writes(os_client, live) == (30, 0) and _write_block(os_client, live) is None
    clones = [i for i in os_client.indices.get(index=f"{alias}-*") if i not in (live, f"{alias}-locks")]
    assert len(clones) == 1 and aliases.get_meta(os_client, clones[0])["status"] == aliases.FAILED
    monkeypatch.undo()
    res = reindex(reindex_config(night, name="night.jsonl"))
    assert res.status == "swapped" and res.removed_unfinished == clones and res.summary.encoded == 1


def test_a_clone_its_run_never_stamped_is_unfinished(os_client, index_name, reindex_config):
    """Killed between _clone and the stamp: the clone carries a copy of the live _meta (validated, the live
    run id); it is never a rollback target, and the next run removes it."""
    alias = index_name
    cfg = reindex_config(synthetic_docs(10, prefix="y"))
    live = reindex(cfg).plan.new_index
    orphan = f"{alias}-29990101-000000"
    os_client.indices.put_settings(index=live, body={"index": {"blocks": {"write": True}}})
    try:
        os_client.indices.clone(index=live, target=orphan)
    finally:
        os_client.indices.put_settings(index=live, body={"index": {"blocks": {"write": None}}})
    assert aliases.get_meta(os_client, orphan)["run_id"] == aliases.get_meta(os_client, live)["run_id"]
    assert list(aliases.unfinished(os_client, alias, live)) == [orphan]


def _letters(summary, name: str) -> list[tuple]:
    """(error_type, doc_id, message) of a run's dead letters or skips, sorted."""
    from pathlib import Path

    out = []
    for f in sorted(Path(summary.dead_letter_path).glob(f"{name}-*.jsonl")):
        for line in f.read_text().splitlines():
            d = json.loads(line)
            out.append((d["error_type"], d.get("doc_id"), d["message"]))
    return sorted(out)


def _stored(client, index: str) -> dict[str, dict]:
    client.indices.refresh(index=index)
    hits = client.search(index=index, body={"size": 10000, "query": {"match_all": {}}})["hits"]["hits"]
    return {h["_id"]: h["_source"] for h in hits}


def test_a_night_prepares_only_the_changes_and_dedupes_counts_and_dead_letters_as_a_full_build(
        os_client, index_name, reindex_config, monkeypatch):
    """The night prepares only the records whose lines changed (the others are found by their bytes in the live
    index's manifest), then only the records it writes (and the other copies of a duplicate id, listed as skipped):
    5 + 5 PrepareFn calls here, where the run and its two passes made 3 x 42. Its counts, skips (duplicate_id with
    both positions), dead letters and documents are those of a full build."""
    from neural_ingest.transforms.prepare import PrepareFn

    docs = synthetic_docs(40, prefix="q")
    reindex(reindex_config(docs))
    by_id = {d["id"]: dict(d) for d in docs}
    night: list = []
    for d in docs:
        if d["id"] in ("q-0005", "q-0006"):  # gone from the source
            continue
        if d["id"] == "q-0010":  # changed, and an earlier copy (the old text) is a duplicate
            night += [by_id["q-0010"], {**d, "body": "Underwater basalt pillows form where lava meets cold seawater."}]
            continue
        if d["id"] == "q-0020":  # unchanged, after an earlier copy that differs (a duplicate, skipped)
            night += [{**d, "body": "a stale draft"}, d]
            continue
        night.append({**d, "topic": "a new topic"} if d["id"] == "q-0030" else d)  # metadata only
    night += [
        "{not json",
        {"id": "q-empty", "title": "", "body": "   "},
        {"id": "q-new", "title": "New", "body": "Honeybees dance."},
    ]
    # one dead letter in 43 records: within a looser error budget and count tolerance than the defaults
    cfg = reindex_config(
        night, name="night.jsonl", overrides={"run.max_failed_ratio": 0.1, "reindex.validation.count_tolerance": 0.05}
    )

    calls: list[int] = []
    prepare = PrepareFn.process

    def counted(self, record):
        calls.append(1)
        return prepare(self, record)

    monkeypatch.setattr(PrepareFn, "process", counted)
    said: list[str] = []
    res = reindex(cfg, echo=said.append)
    monkeypatch.undo()
    s = res.summary
    assert res.status == "swapped" and res.plan.mode == "incremental", res.validation.failures()
    assert any(line.startswith("stamps:      from the manifest") for line in said), said
    # the lines whose bytes changed (q-0010's new copy, q-0020's stale draft, q-0030, q-empty, q-new; the 37 others are the
    # very lines of the live index's documents, found in its manifest), then those read back: q-0010, q-0020's skipped
    # copy, q-0030, q-new; the full build before it and its two passes: 3 x 40
    assert len(calls) == 5 + 5
    assert (s.read, s.encoded, s.reused, s.indexed, s.deleted, s.failed, s.skipped) == (43, 2, 37, 39, 2, 1, 3) and s.reconciles
    assert s.skipped_by_reason == {"duplicate_id": 2, "empty_text": 1} and s.failed_by_reason == {"read.malformed_json": 1}

    full = reindex(cfg, full=True)
    f = full.summary
    assert full.plan.mode == "full" and (f.read, f.encoded, f.indexed, f.failed, f.skipped) == (43, 39, 39, 1, 3)
    assert (f.skipped_by_reason, f.failed_by_reason) == (s.skipped_by_reason, s.failed_by_reason)
    assert _letters(s, "skipped") == _letters(f, "skipped") and len(_letters(s, "skipped")) == 3
    dups = [m for r, _, m in _letters(s, "skipped") if r == "duplicate_id"]
    assert all("was kept" in m and m.count("byte ") == 2 for m in dups), dups
    assert _letters(s, "dead-letters") == _letters(f, "dead-letters") and len(_letters(s, "dead-letters")) == 1
    night_docs, full_docs = _stored(os_client, res.plan.new_index), _stored(os_client, full.plan.new_index)
    assert night_docs.keys() == full_docs.keys() == {d["id"] for d in night if isinstance(d, dict)} - {"q-empty"}
    for doc_id, got in night_docs.items():
        want = full_docs[doc_id]
        assert {k: v for k, v in got.items() if k != "embedding"} == {k: v for k, v in want.items() if k != "embedding"}, doc_id
        assert np.allclose(got["embedding"], want["embedding"], atol=1e-5), doc_id
    assert "Underwater basalt" in night_docs["q-0010"]["text"] and night_docs["q-0030"]["topic"] == "a new topic"


def test_a_csv_night_reads_the_source_again_and_writes_only_the_changes(os_client, index_name, make_config, tmp_path):
    """Other file types than JSONL have no byte offsets to seek to: the night reads them again (uncounted) and
    keeps the documents to write; counts, deduplication and deletes as for JSONL."""
    import csv

    def write(name: str, rows: list[dict]) -> str:
        path = tmp_path / name
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["id", "title", "body", "topic"])
            w.writeheader()
            w.writerows({k: r[k] for k in ("id", "title", "body", "topic")} for r in rows)
        return str(path)

    def config(path: str):
        cfg = make_config(source_path=path, source_type="csv", sink="opensearch", index=index_name, overrides={
            "reindex": {"keep_last": 2, "lock_ttl": 30, "lock_index": f"{index_name}-locks"}, "encoders.0.batch_size": 16,
            "source.metadata_fields": ["topic"]})
        _hold(cfg)
        return cfg

    docs = synthetic_docs(30, prefix="c")
    live = reindex(config(write("day.csv", docs))).plan.new_index
    night = [d for d in docs if d["id"] != "c-0004"]
    night[9] = {**night[9], "body": "Tidal turbines turn twice a day."}  # c-0010 changed
    night.append({**night[20], "body": "an older copy, listed later: it wins"})  # c-0021 twice, the later copy changed
    res = reindex(config(write("night.csv", night)))
    s = res.summary
    assert res.status == "swapped" and res.plan.mode == "incremental", res.validation.failures()
    assert (s.read, s.encoded, s.reused, s.indexed, s.deleted, s.skipped) == (30, 2, 27, 29, 1, 1) and s.reconciles
    assert s.skipped_by_reason == {"duplicate_id": 1}
    assert _writes(os_client, res.plan.new_index) == (2, 3)  # the two written; deleted: c-0004 and the two rewritten
    got = _stored(os_client, res.plan.new_index)
    assert got["c-0021"]["text"].endswith("it wins") and "Tidal turbines" in got["c-0010"]["text"] and "c-0004" not in got
    assert _writes(os_client, live) == (30, 0)


# --------------------------------------------------------------------------- the stamps manifest (transforms/manifest.py)
def _header(client, alias: str, index: str) -> dict:
    return client.get(index=f"{alias}-locks", id=f"manifest/{index}")["_source"]


def test_a_manifest_that_no_longer_describes_the_live_index_is_not_used(os_client, index_name, reindex_config):
    """A write to the live index behind reindex's back (same count: only its shards' max_seq_no moves), or a header of
    another index: the night reads the stamps from the index, as before, and repairs what was changed there."""
    alias = index_name
    docs = synthetic_docs(30, prefix="m")
    cfg = reindex_config(docs)
    said: list[str] = []
    live = reindex(cfg, echo=said.append).plan.new_index
    assert f"manifest:    committed for {live} ({alias}-locks)" in said
    assert _header(os_client, alias, live)["count"] == 30
    os_client.index(index=live, id="m-0003", body={"text": "edited in place"}, params={"refresh": "true"})

    said.clear()
    res = reindex(cfg, echo=said.append)
    s, new = res.summary, res.plan.new_index
    assert res.status == "swapped" and res.plan.mode == "incremental"
    assert any(line.startswith(f"stamps:      read from {live} (the manifest of {live} is stale (seq_no") for line in said), said
    assert (s.read, s.encoded, s.reused, s.deleted) == (30, 1, 29, 0)  # m-0003 has no stamp now: encoded again
    repaired = _stored(os_client, new)["m-0003"]
    assert "edited in place" not in repaired["text"] and repaired["neural_ingest"]["model"] == res.plan.model_hash
    assert f"manifest:    committed for {new} ({alias}-locks)" in said
    assert os_client.exists(index=f"{alias}-locks", id=f"manifest/{live}") is False  # the replaced one is removed

    header = _header(os_client, alias, new)  # now a foreign one: another index's uuid
    os_client.index(
        index=f"{alias}-locks", id=f"manifest/{new}", body={**header, "uuid": "another-index"}, params={"refresh": "true"}
    )
    said.clear()
    changed = reindex_config([{**d, "body": "Moss grows on the north side."} if d["id"] == "m-0007" else d for d in docs])
    res = reindex(changed, echo=said.append)
    assert any("is stale (uuid 'another-index'" in line for line in said), said
    assert (res.summary.encoded, res.summary.reused) == (1, 29) and res.status == "swapped"
    assert "Moss grows" in _stored(os_client, res.plan.new_index)["m-0007"]["text"]


def test_an_unchanged_night_reports_the_live_recall_and_a_changed_night_measures_it(os_client, index_name, reindex_config):
    docs = synthetic_docs(30, prefix="r")
    live = reindex(reindex_config(docs))
    assert live.summary.recall["recall_at_k"] is not None and "reused_from" not in live.summary.recall
    night = reindex(reindex_config(docs))
    assert _writes(os_client, night.plan.new_index) == (0, 0)
    assert night.summary.recall == {**live.summary.recall, "reused_from": live.plan.new_index}
    recall = next(c for c in night.validation.checks if c.name == "recall")
    assert recall.ok and f"measured on {live.plan.new_index}" in recall.detail
    changed = reindex(reindex_config([{**d, "body": "Tides follow the moon."} if d["id"] == "r-0002" else d for d in docs]))
    assert changed.summary.encoded == 1 and "reused_from" not in changed.summary.recall


def test_warm_up_loads_the_new_indexs_graphs_before_any_query(os_client, index_name, make_config):
    """The clone's faiss graphs are loaded by the night's warmup thread, not by the recall check's first query."""
    from neural_ingest.pipelines.reindex.plan import warm_up
    from neural_ingest.sinks import knn_support

    ok, why = knn_support.faiss_available(os_client)
    if not ok:
        pytest.skip(f"faiss is unavailable on the test node: {why}")
    os_client.indices.create(index=index_name, body={"settings": {"index": {"knn": True}}, "mappings": {"properties": {
        "v": {"type": "knn_vector", "dimension": 4, "method": {"name": "hnsw", "engine": "faiss", "space_type": "l2"}}}}})
    for i in range(20):
        os_client.index(index=index_name, id=str(i), body={"v": [i, 1.0, 2.0, 3.0]})
    os_client.indices.refresh(index=index_name)

    def cached() -> dict:
        stats = os_client.transport.perform_request("GET", "/_plugins/_knn/stats")
        return {i: n for node in stats["nodes"].values() for i, n in node.get("indices_in_cache", {}).items()}

    assert index_name not in cached()
    cfg = make_config(sink="opensearch", index=index_name)
    warm_up(cfg.sink, index_name).join(timeout=120)
    assert cached()[index_name]["graph_count"] >= 1
