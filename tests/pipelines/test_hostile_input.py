"""No single record crashes a run: the real pipeline (DirectRunner, all-MiniLM-L6-v2, Parquet sink) over
hostile records in every source format ends with a summary, exit code 0 or 3 (the error budget), never 1;
read = indexed + failed + skipped; every failed record is in a dead-letter file json.loads reads back.

The first tests are the reproductions of issue 15 (each crashed the run before); the property-based ones
generate arbitrary records: any Unicode (lone surrogates included), any bytes, any JSON value, any Arrow type.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import glob
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hostile import ANY_TEXT, JSON_VALUES, UNICODE_TEXT, arrow_arrays, strict_json_loads
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from support import MINILM, hold_model

from neural_ingest.cli import main

# A pipeline run takes seconds: few examples, and no shrinking (it would rerun the pipeline hundreds of times);
# a failure reports the example as drawn.
PIPELINE = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    phases=[Phase.explicit, Phase.generate],
)


def config(tmp: Path, source_type: str, path: Path, sink: dict[str, Any] | None = None, **source: Any) -> Path:
    data = {
        "run": {"name": "hostile", "progress_every_seconds": 60},
        "source": {
            "type": source_type,
            "path": str(path),
            "id_field": "id",
            "text_fields": ["title", "body"],
            "metadata_fields": ["topic", "year"],
            **source,
        },
        "encoder": {"type": "sentence_transformers", "model": MINILM, "device": "cpu", "batch_size": 16},
        "sink": sink or {"type": "parquet", "path": str(tmp / "dataset")},
        "dead_letter": {"path": str(tmp / "dlq")},
    }
    out = tmp / "config.yaml"
    out.write_text(json.dumps(data))  # JSON is YAML
    return out


@pytest.fixture(scope="module", autouse=True)
def model():
    """One model load for the module: the in-process runs reuse it (apache_beam.utils.shared)."""
    from neural_ingest.config import parse_config

    with tempfile.TemporaryDirectory() as tmp:
        cfg = json.loads(config(Path(tmp), "jsonl", Path(tmp) / "x.jsonl").read_text())
    return hold_model(parse_config(cfg))


def run(tmp: Path, source_type: str, path: Path, expect_read: int | None = None, **source: Any) -> dict[str, Any]:
    """`neural-ingest run`, then every check a hostile run must pass; returns the summary."""
    summary_path = tmp / "summary.json"
    r = CliRunner().invoke(main, ["run", str(config(tmp, source_type, path, **source)), "--summary", str(summary_path)])
    assert r.exit_code in (0, 3), f"exit {r.exit_code}: {r.output[-3000:]}\n{r.exception!r}"
    s = json.loads(summary_path.read_text())
    assert s["read"] == s["indexed"] + s["failed"] + s["skipped"], s
    if expect_read is not None:
        assert s["read"] == expect_read, s
    assert (r.exit_code == 3) == (s["failed"] > 0), s  # default budget: max_failed_ratio 0.01
    dead = jsonl_lines(f"{s['dead_letter_path']}/dead-letters*.jsonl")
    skipped = jsonl_lines(f"{s['dead_letter_path']}/skipped*.jsonl")
    assert len(dead) == s["failed"] and len(skipped) == s["skipped"], s
    assert all(d["error_type"] and d["message"] for d in dead)
    if s["indexed"]:
        table = pq.read_table(tmp / "dataset")
        assert table.num_rows == s["indexed"]
        for meta in table.column("metadata").to_pylist():
            assert isinstance(strict_json_loads(meta), dict)
    s["dead"] = dead
    return s


def jsonl_lines(pattern: str) -> list[Any]:
    """Every line of every matching file, read back with strict json.loads (UTF-8, no NaN)."""
    return [
        strict_json_loads(x) for f in glob.glob(pattern) for x in Path(f).read_text(encoding="utf-8").splitlines()
    ]  # any line break


# --------------------------------------------------------------------------- the reproductions
def test_jsonl_lone_surrogates_in_text_and_metadata(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text(
        '{"id": "1", "title": "good"}\n'
        '{"id": "2", "title": "bad \\ud800 text"}\n'
        '{"id": "3", "title": "fine", "topic": "bad \\ud800 topic"}\n'
    )
    s = run(tmp_path, "jsonl", path, expect_read=3)
    assert (s["indexed"], s["failed"]) == (1, 2)
    assert s["failed_by_reason"] == {"read.invalid_unicode": 2}
    assert sorted("'title'" in d["message"] or "'topic'" in d["message"] for d in s["dead"]) == [True, True]


def test_csv_row_with_invalid_utf8(tmp_path):
    path = tmp_path / "docs.csv"
    path.write_bytes(b"id,title,topic\n1,good,a\n2,bad \xff\xfe bytes,a\n")
    s = run(tmp_path, "csv", path, expect_read=2)
    assert (s["indexed"], s["failed"]) == (1, 1)
    row = s["dead"][0]["record"]["row"]
    assert row[1].encode("utf-8", errors="surrogateescape") == b"bad \xff\xfe bytes"


def test_parquet_metadata_of_every_arrow_type_lands_as_json(tmp_path):
    n = 2
    table = pa.table(
        {
            "id": ["1", "2"],
            "title": pa.array(["one", "two"], pa.large_string()),
            "topic": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5), None], pa.timestamp("ns", tz="UTC")),
            "year": pa.StructArray.from_arrays(
                [
                    pa.array([1_000_000_001, 5], pa.timestamp("ns")),
                    pa.array([dt.date(2024, 2, 29)] * n, pa.date32()),
                    pa.array([3_723_000_000_001, 0], pa.time64("ns")),
                    pa.array([-1_500_000, 0], pa.duration("us")),
                    pa.array([decimal.Decimal("12.30"), None], pa.decimal128(6, 2)),
                    pa.array([b"\xff\x00", None], pa.large_binary()),
                    pa.array([[1.5, float("nan")], []], pa.list_(pa.float64())),
                    pa.array([[("k", 1)], None], pa.map_(pa.string(), pa.int8())),
                    pa.array(["a", "b"]).dictionary_encode(),
                    pa.array([2**64 - 1, 0], pa.uint64()),
                ],
                names=["ts", "date", "time", "dur", "dec", "bin", "floats", "map", "cat", "big"],
            ),
        }
    )
    pq.write_table(table, tmp_path / "docs.parquet")
    s = run(tmp_path, "parquet", tmp_path / "docs.parquet", expect_read=2)
    assert (s["indexed"], s["failed"]) == (2, 0)
    meta = {r["id"]: json.loads(r["metadata"]) for r in pq.read_table(tmp_path / "dataset").to_pylist()}
    assert meta["1"] == {
        "topic": "2024-01-02T03:04:05.000000000Z",
        "year": {
            "ts": "1970-01-01T00:00:01.000000001",
            "date": "2024-02-29",
            "time": "01:02:03.000000001",
            "dur": "-P0DT0H0M1.500000S",
            "dec": "12.30",
            "bin": "/wA=",
            "floats": [1.5, None],
            "map": {"k": 1},
            "cat": "a",
            "big": 2**64 - 1,
        },
    }


@pytest.mark.opensearch
def test_opensearch_takes_every_arrow_type_as_metadata(tmp_path, opensearch_url, os_client, index_name):
    """Today every record with a timestamp in metadata failed (`Object of type datetime is not JSON
    serializable`); now OpenSearch indexes them all, dates mapped as dates."""
    table = pa.table(
        {
            "id": ["1", "2"],
            "title": ["one", "two"],
            "topic": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 6), None], pa.timestamp("us")),
            "year": pa.StructArray.from_arrays(
                [
                    pa.array([dt.date(2024, 2, 29)] * 2, pa.date32()),
                    pa.array([decimal.Decimal("12.30"), None], pa.decimal128(6, 2)),
                    pa.array([b"\xff\x00", None], pa.binary()),
                    pa.array([float("nan"), 1.5]),
                    pa.array(["a", "b"]).dictionary_encode(),
                ],
                names=["date", "dec", "bin", "f", "cat"],
            ),
        }
    )
    pq.write_table(table, tmp_path / "docs.parquet")
    sink = {"type": "opensearch", "hosts": [opensearch_url], "index": index_name, "knn": {"engine": "lucene"}}
    summary_path = tmp_path / "summary.json"
    r = CliRunner().invoke(
        main, ["run", str(config(tmp_path, "parquet", tmp_path / "docs.parquet", sink=sink)), "--summary", str(summary_path)]
    )
    assert r.exit_code == 0, r.output[-3000:]
    s = json.loads(summary_path.read_text())
    assert (s["read"], s["indexed"], s["failed"]) == (2, 2, 0)
    doc = os_client.get(index=index_name, id="1")["_source"]
    assert doc["topic"] == "2024-01-02T03:04:05.000006"
    assert doc["year"] == {"date": "2024-02-29", "dec": "12.30", "bin": "/wA=", "f": None, "cat": "a"}
    mapping = os_client.indices.get_mapping(index=index_name)
    props = next(iter(mapping.values()))["mappings"]["properties"]
    assert props["topic"]["type"] == "date" and props["year"]["properties"]["date"]["type"] == "date"


def test_a_parquet_value_with_no_form_dead_letters_its_row_only(tmp_path):
    table = pa.table(
        {"id": ["1", "2"], "title": ["one", "two"], "topic": pa.array([0, 253402300800 * 10**6], pa.timestamp("us"))}
    )
    pq.write_table(table, tmp_path / "docs.parquet")
    s = run(tmp_path, "parquet", tmp_path / "docs.parquet", expect_read=2)
    assert (s["indexed"], s["failed"]) == (1, 1)
    assert "column 'topic'" in s["dead"][0]["message"] and s["dead"][0]["record"]["id"] == "2"


# --------------------------------------------------------------------------- property-based
FIELDS = st.sampled_from(["id", "title", "body", "topic", "year", "other"])
JSON_RECORDS = st.dictionaries(FIELDS, st.one_of(ANY_TEXT, JSON_VALUES), max_size=6)
RAW_LINES = st.binary(max_size=60).filter(lambda b: b"\n" not in b and b"\r" not in b)


def json_line(record: dict[str, Any], ascii_only: bool) -> bytes:
    # ensure_ascii=False writes a lone surrogate raw: surrogatepass makes it the invalid UTF-8 some exporters write.
    return json.dumps(record, ensure_ascii=ascii_only).encode("utf-8", errors="surrogatepass")


@PIPELINE
@given(st.lists(st.one_of(st.builds(json_line, JSON_RECORDS, st.booleans()), RAW_LINES), min_size=1, max_size=8))
def test_any_jsonl(lines):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "docs.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        run(Path(tmp), "jsonl", path, expect_read=sum(1 for x in lines if x.strip()))


CSV_HEADERS = st.one_of(
    st.just(["id", "title", "body", "topic"]),
    st.lists(st.sampled_from(["id", "title", "topic", "t\udcffx"]), min_size=1, max_size=4),
)


@PIPELINE
@given(CSV_HEADERS, st.lists(st.one_of(st.lists(ANY_TEXT, max_size=5), RAW_LINES), min_size=1, max_size=8))
def test_any_csv(header, rows):
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(header)
    chunks = [out.getvalue().encode("utf-8", errors="surrogatepass")]
    for row in rows:
        if isinstance(row, bytes):
            chunks.append(row + b"\n")
            continue
        out = io.StringIO(newline="")
        csv.writer(out).writerow(row)
        chunks.append(out.getvalue().encode("utf-8", errors="surrogatepass"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "docs.csv"
        path.write_bytes(b"".join(chunks))
        run(Path(tmp), "csv", path)


@st.composite
def parquet_tables(draw: Any) -> pa.Table:
    n = draw(st.integers(1, 6))
    ids = draw(st.lists(st.one_of(st.none(), UNICODE_TEXT), min_size=n, max_size=n))
    title = draw(st.one_of(arrow_arrays(size=n), st.lists(UNICODE_TEXT, min_size=n, max_size=n).map(pa.array)))
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "title": title,
            "topic": draw(arrow_arrays(size=n)),
            "year": draw(arrow_arrays(size=n)),
        }
    )


@PIPELINE
@given(parquet_tables())
def test_any_parquet(table):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "docs.parquet"
        try:
            pq.write_table(table, path)
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # a type Parquet cannot store (e.g. an interval)
            return
        run(Path(tmp), "parquet", path, expect_read=table.num_rows)


@PIPELINE
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=5))
def test_any_text_files(contents):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "docs"
        folder.mkdir()
        for i, data in enumerate(contents):
            (folder / f"{i}.txt").write_bytes(data)
        run(Path(tmp), "text", folder / "*.txt", expect_read=len(contents), text_fields=["text"], metadata_fields=["path"])
