"""Nothing lost: bad input, item failures, real back-pressure (tiny write queue), a real outage
(the node stopped and started mid-run), dead letters and replay. Counts and ids checked each time."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from opensearchpy import OpenSearch
from support import EncodeGate, synthetic_docs, write_jsonl

from neural_ingest.cli import main
from neural_ingest.pipelines.ingest import run_ingest
from neural_ingest.pipelines.replay import replay


def dead_letters(run_dir: Path, name: str = "dead-letters") -> list[dict]:
    return [json.loads(ln) for f in sorted(run_dir.glob(f"{name}-*.jsonl")) for ln in f.read_text().splitlines() if ln.strip()]


def ids_in(client: OpenSearch, index: str) -> list[str]:
    client.indices.refresh(index=index)
    res = client.search(index=index, body={"size": 10000, "_source": False, "query": {"match_all": {}}})
    return [h["_id"] for h in res["hits"]["hits"]]


def knn_index(client: OpenSearch, index: str, extra_props: dict | None = None) -> None:
    props = {"embedding": {"type": "knn_vector", "dimension": 384,
                           "method": {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"}}}
    client.indices.create(index=index, body={"settings": {"index.knn": True, "number_of_replicas": 0},
                                             "mappings": {"properties": {**props, **(extra_props or {})}}})


def test_bad_input_each_has_a_defined_outcome(os_client, index_name, make_config, tmp_path):
    good = synthetic_docs(6)
    lines = [json.dumps(d) for d in good]
    lines += [
        "{this is not json",                                                        # malformed -> read dead letter
        json.dumps({"title": "no id", "body": "x"}),                                # missing id -> dead letter
        json.dumps({"id": "no-text", "topic": "x"}),                                # missing text -> dead letter
        json.dumps({"id": "blank", "title": "   ", "body": "\t"}),                  # whitespace -> skipped
        json.dumps({"id": "long", "title": "Long", "body": "word " * 5000}),        # beyond max length -> truncated, indexed
        json.dumps({**good[0], "body": "a second copy of the same id"}),            # duplicate id -> skipped
        json.dumps({"id": "bad-year", "title": "T", "body": "B", "year": "nineteen-ninety"}),  # mapping conflict -> index DL
    ]
    path = tmp_path / "in.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"id": "latin1", "title": "caf\xe9"}\n')  # non-UTF-8
    knn_index(os_client, index_name, {"year": {"type": "integer"}})
    cfg = make_config(source_path=path, sink="opensearch", index=index_name, overrides={"run.max_failed_ratio": 0.5})
    s = run_ingest(cfg)

    assert s.read == 14 and s.reconciles
    assert s.failed_by_reason == {
        "read.malformed_json": 1, "read.invalid_encoding": 1, "prepare.missing_id": 1,
        "prepare.missing_text": 1, "index.mapper_parsing_exception": 1,
    }
    assert s.skipped_by_reason == {"empty_text": 1, "duplicate_id": 1}
    assert sorted(ids_in(os_client, index_name)) == sorted([d["id"] for d in good] + ["long"])
    run_dir = Path(cfg.dead_letter.path) / s.run_id
    letters = dead_letters(run_dir)
    assert len(letters) == s.failed
    for dl in letters:
        assert {"run_id", "stage", "error_type", "message", "attempts", "timestamp", "record"} <= set(dl)
        assert dl["run_id"] == s.run_id and dl["message"]
    index_dl = next(d for d in letters if d["stage"] == "index")
    assert (
        index_dl["status"] == 400
        and index_dl["doc_id"] == "bad-year"
        and index_dl["record"]["source"]["year"] == "nineteen-ninety"
    )
    assert {d["error_type"] for d in dead_letters(run_dir, "skipped")} == {"empty_text", "duplicate_id"}


def test_error_budget_fails_the_cli_run(index_name, make_config, tmp_path):
    rows = [*synthetic_docs(4), "{broken", "{broken too"]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    cfg = make_config(source_path=path, sink="opensearch", index=index_name, overrides={"run.max_failed": 1})
    (tmp_path / "c.json").write_text(cfg.model_dump_json())
    r = CliRunner().invoke(main, ["run", str(tmp_path / "c.json"), "--summary", str(tmp_path / "s.json")])
    assert r.exit_code == 3, r.output
    assert "error budget" in r.output and "run.max_failed=1" in r.output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["status"] == "failed" and summary["indexed"] == 4 and summary["failed"] == 2


def test_replay_after_fixing_dead_letters_leaves_no_duplicates(os_client, index_name, make_config, tmp_path):
    docs = synthetic_docs(5)
    path = write_jsonl(tmp_path / "in.jsonl", [*docs[:4], '{"id": "fixme", "title": "Fix me", "body": "broken" '])
    cfg = make_config(source_path=path, sink="opensearch", index=index_name, overrides={"run.max_failed_ratio": 1})
    first = run_ingest(cfg)
    assert first.failed == 1
    run_dir = Path(cfg.dead_letter.path) / first.run_id
    # The operator fixes the record in the dead-letter file (the cause was the source data) and replays.
    dl_file = next(run_dir.glob("dead-letters-*.jsonl"))
    letter = json.loads(dl_file.read_text())
    letter["record"]["line"] = letter["record"]["line"] + "}"
    dl_file.write_text(json.dumps(letter) + "\n")
    again = replay(str(run_dir), cfg)
    assert again.read == 1 and again.indexed == 1 and again.failed == 0
    # and replaying once more changes nothing: same ids, no duplicates
    replay(str(run_dir), cfg)
    ids = ids_in(os_client, index_name)
    assert sorted(ids) == sorted([d["id"] for d in docs[:4]] + ["fixme"]) and len(ids) == len(set(ids))


def test_back_pressure_on_a_tiny_write_queue_is_retried(node_factory, make_config, tmp_path):
    """thread_pool.write.size=1, queue_size=1: concurrent bulk traffic gets real 429 rejections."""
    node = node_factory(
        "tiny", 9251, ["thread_pool.write.size=1", "thread_pool.write.queue_size=1", "http.max_content_length=100kb"]
    )
    client = OpenSearch(hosts=[node.url], timeout=60)
    index = "backpressure"
    client.indices.delete(index=f"{index}*", ignore=[404])
    stop = threading.Event()
    rejected = {"n": 0}

    def noise() -> None:  # other writers competing for the single write thread
        body = "".join(f'{{"index":{{"_index":"{index}-noise"}}}}\n{{"n":{i}}}\n' for i in range(20))
        deadline = time.monotonic() + 300
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                res = client.bulk(body=body)
                rejected["n"] += sum(1 for it in res["items"] if it["index"]["status"] == 429)
            except Exception:  # noqa: BLE001 - a rejected noise request is the point
                rejected["n"] += 1

    threads = [threading.Thread(target=noise, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        docs = synthetic_docs(120)
        path = write_jsonl(tmp_path / "in.jsonl", docs)
        cfg = make_config(
            source_path=path,
            sink="opensearch",
            index=index,
            overrides={
                "sink.hosts": [node.url],
                "sink.bulk.max_docs": 40,
                "sink.bulk.max_retries": 50,
                "sink.bulk.initial_backoff": 0.05,
                "sink.bulk.max_backoff": 0.5,
            },
        )
        s = run_ingest(cfg)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert rejected["n"] > 0, "the tiny write queue rejected nothing: the test did not create back-pressure"
    assert s.indexed == 120 and s.failed == 0 and s.reconciles
    # 40 docs of 384 floats exceed 100kb: the 413s were split, never dropped
    assert s.retries.get("index.splits", 0) > 0
    ids = ids_in(client, index)
    assert sorted(ids) == sorted(d["id"] for d in docs)


def _run_in_thread(cfg):
    result: dict = {}

    def target() -> None:
        try:
            result["summary"] = run_ingest(cfg)
        except BaseException as e:  # noqa: BLE001
            result["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, result


def _wait_until_held(gate: EncodeGate, client: OpenSearch, index: str, result: dict, want: int) -> None:
    """Wait until the encoder is held and the ``want`` documents before it are in the index."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert not result, f"the run ended before the outage could be staged: {result}"
        if gate.held.is_set() and client.indices.exists(index=index):
            client.indices.refresh(index=index)
            if client.count(index=index)["count"] >= want:
                return
        time.sleep(0.2)
    pytest.fail(f"{want} documents were not indexed before the gate in 240 s")


def test_outage_mid_run_waits_and_indexes_everything_once(node_factory, make_config, tmp_path, monkeypatch):
    node = node_factory("outage", 9252)
    client = OpenSearch(hosts=[node.url], timeout=30, max_retries=0)
    docs = synthetic_docs(300)
    path = write_jsonl(tmp_path / "in.jsonl", docs)
    cfg = make_config(
        source_path=path,
        sink="opensearch",
        index="outage",
        overrides={
            "sink.hosts": [node.url],
            "sink.bulk.max_docs": 10,
            "sink.bulk.outage_deadline": 240,
            "sink.bulk.initial_backoff": 0.2,
            "sink.bulk.max_backoff": 2,
            "encoders.0.batch_size": 10,
            "encoders.0.batching.mode": "fixed",
        },
    )  # each encode call goes straight on to the sink
    gate = EncodeGate(monkeypatch, open_calls=3)
    t, result = _run_in_thread(cfg)
    try:
        _wait_until_held(gate, client, "outage", result, want=1)
        node.stop()
    finally:
        gate.release()
    time.sleep(3)
    node.start()
    t.join(timeout=420)
    assert "error" not in result, result.get("error")
    s = result["summary"]
    assert s.indexed == 300 and s.failed == 0 and s.reconciles
    assert s.retries.get("index.requests", 0) > 0, "the run never saw the outage"
    ids = ids_in(client, "outage")
    assert len(ids) == 300 and sorted(ids) == sorted(d["id"] for d in docs)


def test_outage_past_the_deadline_fails_clearly_then_replays(node_factory, make_config, tmp_path, monkeypatch):
    node = node_factory("deadline", 9253)
    client = OpenSearch(hosts=[node.url], timeout=30, max_retries=0)
    docs = synthetic_docs(300, prefix="d")
    path = write_jsonl(tmp_path / "in.jsonl", docs)
    cfg = make_config(
        source_path=path,
        sink="opensearch",
        index="deadline",
        overrides={
            "sink.hosts": [node.url],
            "sink.bulk.max_docs": 10,
            "sink.bulk.outage_deadline": 2,
            "sink.bulk.initial_backoff": 0.1,
            "sink.bulk.max_backoff": 0.5,
            "encoders.0.batch_size": 10,
            "encoders.0.batching.mode": "fixed",
        },
    )  # each encode call goes straight on to the sink
    gate = EncodeGate(monkeypatch, open_calls=3)
    t, result = _run_in_thread(cfg)
    try:
        _wait_until_held(gate, client, "deadline", result, want=1)
        node.stop()
    finally:
        gate.release()
    t.join(timeout=420)
    assert "error" not in result, result.get("error")
    s = result["summary"]
    assert s.status == "failed" and "max_failed_ratio" in (s.error_budget or "")
    assert s.failed_by_reason.get("index.unavailable", 0) == s.failed > 0 and s.reconciles
    letters = dead_letters(Path(cfg.dead_letter.path) / s.run_id)
    assert all("outage_deadline=2" in d["message"] for d in letters)

    node.start()
    written = set(ids_in(client, "deadline"))
    unwritten = {d["doc_id"] for d in letters}
    assert written | unwritten == {d["id"] for d in docs}
    # A request in flight when the node went down may have been applied without its answer arriving:
    # those documents are dead-lettered as unconfirmed (and replay overwrites them, no duplicates).
    assert len(written & unwritten) <= 4 * 10
    again = replay(str(Path(cfg.dead_letter.path) / s.run_id), cfg)
    assert again.indexed == len(unwritten) and again.failed == 0
    ids = ids_in(client, "deadline")
    assert len(ids) == 300 and set(ids) == {d["id"] for d in docs}


@pytest.mark.parametrize(
    "host, expect",
    [
        ("http://127.0.0.1:9", "cannot reach OpenSearch at http://127.0.0.1:9"),
    ],
)
def test_preflight_unreachable_is_reported_before_encoding(host, expect, make_config, tmp_path):
    cfg = make_config(sink="opensearch", index="never-created", overrides={"sink.hosts": [host]})
    (tmp_path / "c.json").write_text(cfg.model_dump_json())
    for cmd in (["validate"], ["run"]):
        r = CliRunner().invoke(main, [*cmd, str(tmp_path / "c.json")])
        assert r.exit_code == 2, r.output
        assert expect in r.output and "check sink.hosts" in r.output
    assert not (tmp_path / "dlq").exists()


def test_preflight_tls_error_names_the_fix(opensearch_url, make_config, tmp_path):
    """https:// against the plain-HTTP test node: a real TLS handshake failure, named for what it is
    (not "set sink.ca_certs", which would not help)."""
    cfg = make_config(
        sink="opensearch", index="never-created", overrides={"sink.hosts": [opensearch_url.replace("http://", "https://")]}
    )
    (tmp_path / "c.json").write_text(cfg.model_dump_json())
    r = CliRunner().invoke(main, ["validate", str(tmp_path / "c.json")])
    assert r.exit_code == 2, r.output
    assert "speaks plain HTTP, not TLS: use http://" in r.output and "ca_certs" not in r.output


def test_preflight_wrong_credentials(make_config, tmp_path, monkeypatch):
    """The test node has no security plugin, so a 401 comes from a loopback stand-in (a fault the real
    server here cannot show)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Deny(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"error":"Unauthorized","status":401}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Deny)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("TEST_OS_PASSWORD", "hunter2-not-shown")
        cfg = make_config(
            sink="opensearch",
            index="x",
            overrides={
                "sink.hosts": [f"http://127.0.0.1:{server.server_port}"],
                "sink.username": "ingest",
                "sink.password": "hunter2-not-shown",
            },
        )
        (tmp_path / "c.json").write_text(cfg.model_dump_json(exclude={"sink": {"password"}}))
        r = CliRunner().invoke(main, ["validate", str(tmp_path / "c.json"), "--set", "sink.password=${TEST_OS_PASSWORD}"])
        assert r.exit_code == 2, r.output
        assert "rejected the credentials (401)" in r.output and "hunter2" not in r.output
    finally:
        server.shutdown()


def test_password_never_appears_in_any_output(opensearch_url, index_name, make_config, tmp_path, monkeypatch):
    import subprocess
    import sys

    secret = "Sup3r-S3cret-Passw0rd-4711"
    monkeypatch.setenv("NI_TEST_PASSWORD", secret)
    path = write_jsonl(tmp_path / "in.jsonl", [*synthetic_docs(5), "{bad line", {"id": "e", "title": " ", "body": ""}])
    cfg = make_config(source_path=path, sink="opensearch", index=index_name, overrides={"sink.username": "admin"})
    conf = tmp_path / "c.json"
    conf.write_text(cfg.model_dump_json())
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "neural_ingest.cli",
            "-v",
            "run",
            str(conf),
            "--set",
            "sink.password=${NI_TEST_PASSWORD}",
            "--set",
            "run.max_failed_ratio=1",
            "--summary",
            str(tmp_path / "summary.json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    everything = out.stdout + out.stderr
    for f in tmp_path.rglob("*"):
        if f.is_file() and f.name != "c.json":
            everything += f.read_text(errors="replace")
    assert "dead-letters" in str(list(tmp_path.rglob("*")))  # the dead letters were written and searched too
    assert secret not in everything
