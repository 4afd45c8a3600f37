"""Raw records -> Documents: pick the id, join the text fields, carry metadata.

A record without an id or text is a dead letter (it needs fixing at the source); one whose text is
empty or only whitespace is skipped and counted, since there is nothing to embed. Metadata takes the JSON
forms OpenSearch accepts (neural_ingest.metadata: ISO 8601 dates, base64 binary, NaN as null...); a value
with none, or text / an id that is not Unicode, dead-letters the record with the field named. No record
can fail the run: anything else a record raises here is its own dead letter (``prepare_error``).
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Iterable

import apache_beam as beam

from neural_ingest.config import SourceConfig
from neural_ingest.metadata import MetadataError, json_value, lone_surrogate
from neural_ingest.records import PREPARE, DeadLetter, Document, content_id
from neural_ingest.transforms import counters, positions
from neural_ingest.transforms.counters import DEAD_LETTER, SKIPPED
from neural_ingest.transforms.positions import pop_position


def _nan(value: Any) -> bool:
    """NaN or infinity (a float column's missing value, as pandas writes it): no text, as null is none."""
    return isinstance(value, float) and not math.isfinite(value)


class PrepareFn(beam.DoFn):
    def __init__(self, cfg: SourceConfig):
        self.cfg = cfg

    def _dead(self, reason: str, message: str, record: Any, doc_id: str | None = None):
        counters.failed(PREPARE, reason)
        return beam.pvalue.TaggedOutput(DEAD_LETTER, DeadLetter(PREPARE, reason, message, record, doc_id=doc_id))

    def process(self, record: dict[str, Any]) -> Iterable[Any]:
        record, position = pop_position(record)  # (file, n) from the reader, for keep-the-last deduplication
        try:
            out = list(self._outputs(record))
        except Exception as e:  # noqa: BLE001 - one record must never fail the run: it is a dead letter
            out = [self._dead("prepare_error", f"{type(e).__name__}: {str(e)[:2000]}", record)]
        for o in out:
            if isinstance(o, Document) and self.cfg.deduplicate:
                o.position = position
            yield o

    def _outputs(self, record: dict[str, Any]) -> Iterable[Any]:
        c = self.cfg
        if not isinstance(record, dict):
            yield self._dead("not_an_object", f"expected a record (object), got {type(record).__name__}", record)
            return
        present = [f for f in c.text_fields if record.get(f) is not None and not _nan(record[f])]
        for f in present:  # the summary's text_fields: a field no record has is warned about
            counters.inc(f"text_field.{f}")
        if not present:
            yield self._dead("missing_text", f"none of the text fields {c.text_fields} is present", record)
            return
        bad = [f for f in present if not isinstance(record[f], (str, int, float))]
        if bad:
            yield self._dead("invalid_text", f"text field(s) {bad} are not strings", record)
            return
        bad = [f for f in present if isinstance(record[f], str) and lone_surrogate(record[f])]
        if bad:
            yield self._dead("invalid_unicode", f"text field(s) {bad} hold a lone surrogate, which is not Unicode", record)
            return
        text = c.text_separator.join(str(record[f]) for f in present if str(record[f]).strip())
        raw_metadata = {f: record[f] for f in c.metadata_fields if f in record}
        try:
            metadata = json_value(raw_metadata)
        except MetadataError as e:
            yield self._dead("invalid_metadata", f"metadata {e}", record)
            return
        doc_id: str
        if c.id_field is None:
            doc_id = content_id(text, raw_metadata)  # as before the JSON forms: ids of earlier runs stay
        else:
            raw_id = record.get(c.id_field)
            if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
                yield self._dead("missing_id", f"id field {c.id_field!r} is missing or empty", record)
                return
            doc_id = str(raw_id).strip()
            if lone_surrogate(doc_id):
                yield self._dead("invalid_id", f"id field {c.id_field!r} holds a lone surrogate, which is not Unicode", record)
                return
            if len(doc_id.encode("utf-8")) > 512:
                yield self._dead("invalid_id", "id is longer than OpenSearch's 512-byte _id limit", record)
                return
        if not text.strip():
            yield counters.skip_record(PREPARE, "empty_text", "text is empty or only whitespace", record, doc_id)
            return
        yield Document(id=doc_id, text=text, metadata=metadata, source=record)


class PrepareDocuments(beam.PTransform):
    """dicts -> {"documents": Documents, "dead_letter": DeadLetters, "skipped": DeadLetters}."""

    def __init__(self, cfg: SourceConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, records: beam.PCollection) -> dict[str, beam.PCollection]:
        out = records | "Prepare" >> beam.ParDo(PrepareFn(self.cfg)).with_outputs(DEAD_LETTER, SKIPPED, main="documents")
        docs, skipped = out.documents, [out[SKIPPED]]
        if self.cfg.deduplicate:
            dedup = docs | "DropDuplicateIds" >> DropDuplicateIds(self.cfg.type)
            docs = dedup["documents"]
            skipped.append(dedup[SKIPPED])
        return {"documents": docs, DEAD_LETTER: out[DEAD_LETTER], SKIPPED: tuple(skipped) | "Skipped" >> beam.Flatten()}


class KeepOneFn(beam.DoFn):
    """Of several documents with one id, keep the last in source order (file, then byte offset / line /
    row), as an upsert would, and list the others as skipped. Without positions (an index source): the
    same one every run."""

    def __init__(self, source_type: str = "jsonl"):
        self.source_type = source_type

    def process(self, item: tuple[str, Iterable[Document]]) -> Iterable[Any]:
        doc_id, docs = item
        ordered = sorted(docs, key=_source_order)
        kept = ordered[-1]
        where = positions.describe(kept.position, self.source_type)
        yield dataclasses.replace(kept, position=None)  # resolved: not carried on to the encoders
        for extra in ordered[:-1]:
            yield counters.skip_record(
                PREPARE, "duplicate_id",
                f"id {doc_id!r} appears {len(ordered)} times in this run; the last in source order ({where}) was kept, "
                f"as an upsert would; this one is at {positions.describe(extra.position, self.source_type)}",
                extra.source, doc_id,
            )


def _source_order(d: Document) -> tuple[Any, ...]:
    return (d.position is not None, d.position or ("", 0), d.text, json.dumps(d.metadata, sort_keys=True, default=str))


class DropDuplicateIds(beam.PTransform):
    """Documents -> {"documents": one per id, "skipped": the duplicates}. One shuffle, keyed by id."""

    def __init__(self, source_type: str = "jsonl"):
        super().__init__()
        self.source_type = source_type

    def expand(self, docs: beam.PCollection) -> dict[str, beam.PCollection]:
        out = (
            docs
            | "KeyById" >> beam.Map(lambda d: (d.id, d))
            | "GroupById" >> beam.GroupByKey()
            | "KeepOne" >> beam.ParDo(KeepOneFn(self.source_type)).with_outputs(SKIPPED, main="documents")
        )
        return {"documents": out.documents, SKIPPED: out[SKIPPED]}
