"""ReadRecords on hostile files: every bad record is its own dead letter with a reason naming the field,
the good ones are read, and nothing reaches a later stage that its coders could not carry."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter
from support import collect, collected

from neural_ingest.config import SourceConfig
from neural_ingest.transforms.counters import DEAD_LETTER, NAMESPACE
from neural_ingest.transforms.positions import pop_position
from neural_ingest.transforms.read import ReadRecords


def run_read(cfg: Any, positions: dict[str, Any] | None = None):
    """(records without their source positions, dead letters, counters); ``positions``: id -> (file, n)."""
    with beam.Pipeline("DirectRunner") as p:
        out = p | ReadRecords(cfg)
        # Through a shuffle, as a fused runner would not: every record must survive Beam's coders.
        out["records"] | "Shuffle" >> beam.Reshuffle() | "r" >> collect("hostile-records")
        out[DEAD_LETTER] | "d" >> collect("hostile-dead")
    records, dead = [], collected("hostile-dead")
    for raw in collected("hostile-records"):
        record, position = pop_position(raw)
        records.append(record)
        if positions is not None:
            positions[str(record.get("id"))] = position
    counters: dict[str, int] = {}
    for r in p.result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        counters[r.key.metric.name] = counters.get(r.key.metric.name, 0) + r.committed  # summed over steps
    return records, dead, counters


def reasons(dead) -> dict[str, str]:
    return {d.error_type: d.message for d in dead}


def test_jsonl_lone_surrogates_big_numbers_and_deep_nesting(tmp_path):
    path = tmp_path / "a.jsonl"
    lines = [
        '{"id": "1", "text": "good", "topic": NaN}',
        '{"id": "2", "text": "bad \\ud800 text"}',
        '{"id": "3", "text": "ok", "topic": {"tags": ["x", "\\udfff"]}}',
        '{"id": "4", "text": "ok", "n": ' + "9" * 5000 + "}",
        '{"id": "5", "text": "deep", "topic": ' + '{"a": ' * 400 + "1" + "}" * 400 + "}",
        '{"id": "6", "text": "pair \\ud83d\\ude00 is one character"}',
    ]
    path.write_text("\n".join(lines) + "\n")
    records, dead, counters = run_read(SourceConfig(type="jsonl", path=str(path)))
    assert sorted(r["id"] for r in records) == ["1", "6"]
    assert records[0]["text"] == "good" or records[1]["text"] == "good"
    assert counters["read"] == 6 and len(dead) == 4
    why = reasons(dead)
    assert "'topic.tags[1]'" in why["invalid_unicode"] or "'text'" in why["invalid_unicode"]
    assert sorted(d.error_type for d in dead) == ["invalid_unicode", "invalid_unicode", "malformed_json", "too_deeply_nested"]
    for d in dead:
        json.loads(d.to_json("r")).keys()
        d.to_json("r").encode("utf-8")


def test_csv_invalid_bytes_in_a_row_and_in_the_header(tmp_path):
    (tmp_path / "rows.csv").write_bytes(b"id,text\n1,good\n2,bad \xff\xfe bytes\n")
    records, dead, counters = run_read(SourceConfig(type="csv", path=str(tmp_path / "rows.csv")))
    assert records == [{"id": "1", "text": "good"}] and counters["read"] == 2
    letter = json.loads(dead[0].to_json("r"))  # {"file","line","row"}: the shape replay reads
    assert letter["error_type"] == "invalid_encoding" and letter["record"]["line"] == 3
    assert letter["record"]["row"][1].encode("utf-8", errors="surrogateescape") == b"bad \xff\xfe bytes"

    (tmp_path / "header.csv").write_bytes(b"id,t\xffext\n1,a\n2,b\n")
    records, dead, counters = run_read(SourceConfig(type="csv", path=str(tmp_path / "header.csv")))
    assert records == [] and counters["read"] == 2 and len(dead) == 2
    assert all("header" in d.message for d in dead)


def test_parquet_every_arrow_type_and_out_of_range_values(tmp_path):
    """ns timestamps and years past 9999 failed the whole file in Beam's ReadFromParquet; now each column
    takes its JSON form and a value with none dead-letters its row only, naming the column."""
    table = pa.table(
        {
            "id": ["1", "2"],
            "text": pa.array(["one", "two"], pa.large_string()),
            "ts": pa.array([1_000_000_001, 2], pa.timestamp("ns", tz="UTC")),
            "day": pa.array([dt.date(2024, 2, 29), None], pa.date32()),
            "late": pa.array([0, 253402300800 * 10], pa.timestamp("s")),
            "dec": pa.array([decimal.Decimal("1.20"), None], pa.decimal128(5, 2)),
            "blob": pa.array([b"\xff", None], pa.large_binary()),
            "tags": pa.array([[("k", 1)], []], pa.map_(pa.string(), pa.int8())),
            "cat": pa.array(["a", "b"]).dictionary_encode(),
            "unused": pa.array([253402300800 * 10, 0], pa.timestamp("s")),  # no form, but not read
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    cfg = SourceConfig(
        type="parquet", path=str(tmp_path / "t.parquet"), metadata_fields=["ts", "day", "late", "dec", "blob", "tags", "cat"]
    )
    records, dead, counters = run_read(cfg)
    assert counters["read"] == 2
    assert records == [
        {
            "id": "1",
            "text": "one",
            "ts": "1970-01-01T00:00:01.000000001Z",
            "day": "2024-02-29",
            "late": "1970-01-01T00:00:00.000",  # Parquet keeps seconds as ms
            "dec": decimal.Decimal("1.20"),
            "blob": b"\xff",
            "tags": {"k": 1},
            "cat": "a",
        }
    ]
    assert len(dead) == 1 and dead[0].error_type == "invalid_value"
    assert "column 'late'" in dead[0].message and "outside years 1-9999" in dead[0].message
    assert dead[0].record["id"] == "2" and "unused" not in dead[0].record  # only the columns the run uses


def test_text_files_of_any_bytes(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"good text")
    (tmp_path / "b.txt").write_bytes(b"\xed\xa0\x80 CESU surrogate")
    records, dead, counters = run_read(SourceConfig(type="text", path=str(tmp_path / "*.txt")))
    assert [r["text"] for r in records] == ["good text"] and counters["read"] == 2
    assert dead[0].error_type == "invalid_encoding"


@pytest.mark.opensearch
def test_opensearch_source_document_with_a_lone_surrogate(os_client, opensearch_url, index_name):
    """Another writer can store "\\ud800" (OpenSearch keeps the escape): that document is a read dead letter."""
    from neural_ingest.config import OpenSearchSourceConfig

    os_client.index(index=index_name, id="good", body={"title": "fine"}, refresh=True)
    raw = b'{"title": "bad \\ud800 text"}'
    os_client.transport.perform_request("PUT", f"/{index_name}/_doc/bad", body=raw, params={"refresh": "true"})
    cfg = OpenSearchSourceConfig(type="opensearch", hosts=[opensearch_url], index=index_name, text_fields=["title"])
    records, dead, counters = run_read(cfg)
    assert [r["_id"] for r in records] == ["good"] and counters["read"] == 2
    assert dead[0].error_type == "invalid_unicode" and dead[0].doc_id == "bad" and "'title'" in dead[0].message


def test_a_truncated_parquet_file_is_a_dead_letter_the_others_are_read(tmp_path):
    pq.write_table(pa.table({"id": ["1", "2"], "text": ["one", "two"]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": ["3"], "text": ["three"]}), tmp_path / "b.parquet")
    data = (tmp_path / "b.parquet").read_bytes()
    (tmp_path / "b.parquet").write_bytes(data[: len(data) // 2])  # an export cut short
    records, dead, counters = run_read(SourceConfig(type="parquet", path=str(tmp_path / "*.parquet")))
    assert sorted(r["id"] for r in records) == ["1", "2"] and counters["read"] == 3
    assert dead[0].error_type == "unreadable_file" and dead[0].record == {"file": str(tmp_path / "b.parquet")}


def test_parquet_row_groups_are_all_read(tmp_path):
    table = pa.table({"id": [str(i) for i in range(25)], "text": ["t"] * 25, "other": list(range(25))})
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=10)
    positions: dict[str, Any] = {}
    records, dead, counters = run_read(SourceConfig(type="parquet", path=str(tmp_path / "a.parquet")), positions)
    assert sorted(int(r["id"]) for r in records) == list(range(25)) and dead == [] and counters["read"] == 25
    assert set(records[0]) == {"id", "text"}
    # each row's (file, row index in the file) across row groups: the order keep-the-last deduplication uses
    assert positions == {str(i): (str(tmp_path / "a.parquet"), i) for i in range(25)}
