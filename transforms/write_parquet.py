"""Write Documents as rows of a Parquet dataset (id, text, metadata JSON, one column per encoder)."""
from __future__ import annotations

import json
from typing import Any

import apache_beam as beam
import pyarrow as pa

from neural_ingest.records import Document
from neural_ingest.transforms import counters


class ToRowFn(beam.DoFn):
    def __init__(self, text_field: str, fields: list[str], progress_every: float):
        self.text_field = text_field
        self.fields = fields
        self.progress_every = progress_every

    def process(self, doc: Document):
        row: dict[str, Any] = {"id": doc.id, self.text_field: doc.text, "metadata": json.dumps(doc.metadata, default=str)}
        for f in self.fields:
            vec = doc.embeddings[f]
            row[f] = list(vec.items()) if isinstance(vec, dict) else vec.tolist()
        counters.inc("indexed")
        counters.Progress.add("written", 1, self.progress_every)
        yield row


class WriteParquetDataset(beam.PTransform):
    """Documents -> Parquet files under ``prefix``; returns no dead letters (a write error fails the run)."""

    def __init__(self, prefix: str, schema: pa.Schema, text_field: str, fields: list[str], progress_every: float):
        super().__init__()
        self.prefix = prefix
        self.schema = schema
        self.text_field = text_field
        self.fields = fields
        self.progress_every = progress_every

    def expand(self, docs: beam.PCollection) -> dict[str, beam.PCollection]:
        _ = (
            docs
            | "ToRow" >> beam.ParDo(ToRowFn(self.text_field, self.fields, self.progress_every))
            | "WriteParquet" >> beam.io.WriteToParquet(self.prefix, self.schema, file_name_suffix=".parquet")
        )
        return {}
