"""ToArrowFn: Documents -> Arrow tables of the sink's schema (vectors stacked per record batch), a table per
~row group; metadata with no JSON form is the document's own dead letter; every row is counted once."""
from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from neural_ingest.encoders.base import ModelInfo
from neural_ingest.records import Document
from neural_ingest.sinks.parquet import arrow_schema
from neural_ingest.transforms.write_parquet import ToArrowFn

FIELDS = {"embedding": ModelInfo("d", "dense", dimension=3), "sparse": ModelInfo("s", "sparse")}


def _doc(i: int, metadata=None) -> Document:
    vec = np.array([i, i + 0.5, -i], dtype=np.float32)
    return Document(id=f"d{i}", text=f"text {i}", metadata={"n": i} if metadata is None else metadata,
                    embeddings={"embedding": vec, "sparse": {"tok": float(i)}})


def test_tables_hold_every_row_in_order_and_bad_metadata_is_a_dead_letter():
    schema = arrow_schema("text", FIELDS)
    fn = ToArrowFn(schema, "text", list(FIELDS), 3600, row_group_bytes=1, batch_rows=4)  # a table per 4 rows
    fn.start_bundle()
    window = GlobalWindow()
    docs = [_doc(i) for i in range(10)]
    docs[5] = _doc(5, {"bad": object()})
    out = [o for d in docs for o in fn.process(d, window=window)]
    out += list(fn.finish_bundle())
    dead = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput)]
    assert [(d.doc_id, d.error_type) for d in dead] == [("d5", "invalid_metadata")]
    tables = [o.value if isinstance(o, WindowedValue) else o for o in out if not isinstance(o, beam.pvalue.TaggedOutput)]
    assert [t.num_rows for t in tables] == [4, 4, 1]
    assert isinstance(out[-1], WindowedValue) and out[-1].windows == (window,)
    table = pa.concat_tables(tables)
    assert table.schema == schema
    assert table.column("id").to_pylist() == [f"d{i}" for i in range(10) if i != 5]
    assert table.column("metadata").to_pylist()[0] == '{"n": 0}'
    assert table.column("embedding").to_pylist()[2] == [2.0, 2.5, -2.0]
    assert table.column("sparse").to_pylist()[1] == [("tok", 1.0)]


def test_rows_stay_in_one_table_until_a_row_group_is_full():
    schema = arrow_schema("text", {"embedding": FIELDS["embedding"]})
    fn = ToArrowFn(schema, "text", ["embedding"], 3600, batch_rows=2)  # 64 MiB: one table at the end
    fn.start_bundle()
    out = [o for i in range(5) for o in fn.process(_doc(i), window=GlobalWindow())]
    assert out == []
    (last,) = list(fn.finish_bundle())
    assert last.value.num_rows == 5 and last.value.to_batches()[0].num_rows == 2
