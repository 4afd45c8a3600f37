"""Write Documents as rows of a Parquet dataset (id, text, metadata JSON, one column per encoder)."""
from __future__ import annotations

from typing import Any

import apache_beam as beam
import pyarrow as pa

from neural_ingest.metadata import MetadataError, metadata_json
from neural_ingest.records import INDEX, DeadLetter, Document
from neural_ingest.transforms import counters
from neural_ingest.transforms.counters import DEAD_LETTER


def metadata_or_dead(doc: Document) -> Any:
    """The metadata column's JSON, or the document's dead letter (a value with no JSON form)."""
    try:
        return metadata_json(doc.metadata)
    except MetadataError as e:
        counters.failed(INDEX, "invalid_metadata")
        return beam.pvalue.TaggedOutput(DEAD_LETTER, DeadLetter(INDEX, "invalid_metadata", f"metadata {e}", doc, doc_id=doc.id))


class ToRowFn(beam.DoFn):
    def __init__(self, text_field: str, fields: list[str], progress_every: float):
        self.text_field = text_field
        self.fields = fields
        self.progress_every = progress_every

    def process(self, doc: Document):
        meta = metadata_or_dead(doc)
        if not isinstance(meta, str):
            yield meta
            return
        row: dict[str, Any] = {"id": doc.id, self.text_field: doc.text, "metadata": meta}
        for f in self.fields:
            vec = doc.embeddings[f]
            row[f] = list(vec.items()) if isinstance(vec, dict) else vec.tolist()
        counters.inc("indexed")
        counters.Progress.add("written", 1, self.progress_every)
        yield row


class WriteParquetDataset(beam.PTransform):
    """Documents -> Parquet files under ``prefix``; {"dead_letter": metadata with no JSON form} (a write error fails the run)."""

    def __init__(self, prefix: str, schema: pa.Schema, text_field: str, fields: list[str], progress_every: float):
        super().__init__()
        self.prefix = prefix
        self.schema = schema
        self.text_field = text_field
        self.fields = fields
        self.progress_every = progress_every

    def expand(self, docs: beam.PCollection) -> dict[str, beam.PCollection]:
        rows = docs | "ToRow" >> beam.ParDo(ToRowFn(self.text_field, self.fields, self.progress_every)).with_outputs(
            DEAD_LETTER, main="rows"
        )
        _ = rows.rows | "WriteParquet" >> beam.io.WriteToParquet(self.prefix, self.schema, file_name_suffix=".parquet")
        return {DEAD_LETTER: rows[DEAD_LETTER]}
