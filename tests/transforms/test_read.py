"""ReadRecords on real files of each format, including the malformed records real data has."""
from __future__ import annotations

import json

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics.metric import MetricsFilter
from support import collect, collected

from neural_ingest.config import SourceConfig
from neural_ingest.transforms.counters import DEAD_LETTER, NAMESPACE
from neural_ingest.transforms.read import ReadRecords


def run_read(cfg: SourceConfig):
    with beam.Pipeline("DirectRunner") as p:
        out = p | ReadRecords(cfg)
        out["records"] | "r" >> collect("records")
        out[DEAD_LETTER] | "d" >> collect("dead")
    records, dead = collected("records"), collected("dead")
    counters = {
        r.key.metric.name: r.committed
        for r in p.result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    }
    return records, dead, counters


def test_jsonl_good_bad_and_non_utf8(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(
        b'{"id": "1", "text": "caf\xc3\xa9"}\n'
        b"\n"
        b"{not json\n"
        b'{"id": "3", "text": "bad \xff byte"}\n'
        b"[1, 2]\n"
        b'{"id": "2", "text": "ok"}\n'
    )
    records, dead, counters = run_read(SourceConfig(type="jsonl", path=str(path)))
    assert sorted(r["id"] for r in records) == ["1", "2"]
    assert {r["text"] for r in records} == {"café", "ok"}
    assert sorted(d.error_type for d in dead) == ["invalid_encoding", "malformed_json", "not_an_object"]
    assert all(d.stage == "read" and d.record["file"].endswith("a.jsonl") for d in dead)
    # the blank line is not a record; the 5 others are all counted as read
    assert counters["read"] == 5


def test_csv_quoted_multiline_and_wrong_field_count(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text('id,title,body\n1,One,"first line\nsecond line"\n2,Two\n3,"Three, with comma",body3\n')
    records, dead, counters = run_read(SourceConfig(type="csv", path=str(path), text_fields=["title", "body"]))
    assert {r["id"]: r["body"] for r in records} == {"1": "first line\nsecond line", "3": "body3"}
    assert [d.error_type for d in dead] == ["malformed_csv"]
    assert "2 fields, header has 3" in dead[0].message
    assert counters["read"] == 3


def test_parquet_and_glob(tmp_path):
    for i in range(2):
        pq.write_table(pa.table({"id": [f"{i}a", f"{i}b"], "text": ["x", "y"]}), tmp_path / f"part-{i}.parquet")
    records, dead, counters = run_read(SourceConfig(type="parquet", path=str(tmp_path / "part-*.parquet")))
    assert sorted(r["id"] for r in records) == ["0a", "0b", "1a", "1b"]
    assert dead == [] and counters["read"] == 4


def test_text_files_are_one_document_each(tmp_path):
    (tmp_path / "one.txt").write_text("Hello there.\nSecond line.")
    (tmp_path / "two.txt").write_bytes(b"\xff\xfe not utf8")
    records, dead, counters = run_read(SourceConfig(type="text", path=str(tmp_path / "*.txt")))
    assert [(r["id"].endswith("one.txt"), r["text"]) for r in records] == [(True, "Hello there.\nSecond line.")]
    assert [d.error_type for d in dead] == ["invalid_encoding"]
    assert counters["read"] == 2


def test_dead_letters_serialise_bytes(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"\xff{\n")
    _, dead, _ = run_read(SourceConfig(type="jsonl", path=str(path)))
    doc = json.loads(dead[0].to_json("run-1"))
    assert doc["run_id"] == "run-1" and doc["stage"] == "read" and "\\xff" in doc["record"]["line"]
