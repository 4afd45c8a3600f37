"""WriteParquetDataset: every row once, in the sink's schema, over several bundles; metadata with no JSON form is the
document's own dead letter; a row group per ~64 MiB; a run with no rows still leaves a file with the columns; chunked
documents become the chunk column."""
from __future__ import annotations

from functools import partial
from pathlib import Path
from types import SimpleNamespace

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.util import assert_that, equal_to

from neural_ingest.encoders.base import ModelInfo
from neural_ingest.records import Document
from neural_ingest.sinks.parquet import arrow_schema
from neural_ingest.sinks.parquet_chunks import parquet_schema
from neural_ingest.transforms.write_chunks import chunk_record_batch
from neural_ingest.transforms.write_parquet import WriteParquetDataset, WriteParquetFn, record_batch

FIELDS = {"embedding": ModelInfo("d", "dense", dimension=3), "sparse": ModelInfo("s", "sparse")}


def _doc(i: int, metadata=None) -> Document:
    vec = np.array([i, i + 0.5, -i], dtype=np.float32)
    return Document(id=f"d{i}", text=f"text {i}", metadata={"n": i} if metadata is None else metadata,
                    embeddings={"embedding": vec, "sparse": {"tok": float(i)}})


def write(tmp_path: Path, docs: list, schema: pa.Schema, to_batch) -> tuple[pa.Table, list[str]]:
    out = tmp_path / "ds"
    out.mkdir()
    with beam.Pipeline("DirectRunner") as p:
        written = (
            p | beam.Create(docs) | "Spread" >> beam.Reshuffle()  # several bundles
            | WriteParquetDataset(str(out), schema, to_batch, 3600)
        )
        assert_that(written["dead_letter"] | beam.Map(lambda d: (d.doc_id, d.error_type)),
                    equal_to([(d.id, "invalid_metadata") for d in docs if "bad" in d.metadata]))
    names = sorted(p.name for p in out.iterdir())
    return pq.read_table(out), names


def test_every_row_once_in_the_schema_and_bad_metadata_is_a_dead_letter(tmp_path):
    schema = arrow_schema("text", FIELDS)
    docs = [_doc(i) for i in range(2500)]
    docs[5] = _doc(5, {"bad": object()})
    table, names = write(tmp_path, docs, schema, partial(record_batch, schema, list(FIELDS)))
    assert names == [f"part-{i:05d}.parquet" for i in range(len(names))]  # no temporary directory left
    assert table.schema == schema
    rows = {r["id"]: r for r in table.to_pylist()}
    assert sorted(rows) == sorted(f"d{i}" for i in range(2500) if i != 5) and table.num_rows == 2499
    assert rows["d0"]["metadata"] == '{"n": 0}'
    assert rows["d2"]["embedding"] == [2.0, 2.5, -2.0] and rows["d1"]["sparse"] == [("tok", 1.0)]


def test_a_run_without_rows_leaves_one_empty_file_with_the_columns(tmp_path):
    schema = arrow_schema("text", FIELDS)
    table, names = write(tmp_path, [], schema, partial(record_batch, schema, list(FIELDS)))
    assert names == ["part-00000.parquet"]
    assert table.num_rows == 0 and table.schema == schema


def test_chunked_documents_become_the_chunk_column(tmp_path):
    fields = {"embedding": FIELDS["embedding"]}
    plan = SimpleNamespace(mode="chunk", storage="nested", field="chunks")
    schema = parquet_schema("text", fields, plan)
    doc = _doc(1)
    doc.chunks = [{"text": "te", "start": 0, "end": 2, "index": 0}, {"text": "xt", "start": 2, "end": 4, "index": 1}]
    doc.embeddings = {"embedding": [np.array([1, 2, 3], np.float32), np.array([4, 5, 6], np.float32)]}
    table, _ = write(tmp_path, [doc], schema, partial(chunk_record_batch, schema, "text", list(fields), plan))
    (row,) = table.to_pylist()
    assert [(c["text"], c["embedding"]) for c in row["chunks"]] == [("te", [1.0, 2.0, 3.0]), ("xt", [4.0, 5.0, 6.0])]


def test_rows_stay_in_one_row_group_until_it_is_full(tmp_path):
    schema = arrow_schema("text", {"embedding": FIELDS["embedding"]})
    to_batch = partial(record_batch, schema, ["embedding"])
    for row_group_bytes, groups in ((64 << 20, [5]), (1, [2, 2, 1])):
        fn = WriteParquetFn(str(tmp_path / f"t{row_group_bytes}"), schema, to_batch, 3600,
                            row_group_bytes=row_group_bytes, batch_rows=2)
        Path(fn.temp_dir).mkdir()
        fn.start_bundle()
        assert [o for i in range(5) for o in fn.process(_doc(i))] == []
        (done,) = list(fn.finish_bundle())
        name, path = done.value
        meta = pq.ParquetFile(path).metadata
        assert name == "part" and [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == groups
