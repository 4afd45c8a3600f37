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
import sys
import zlib
from collections.abc import Iterable
from typing import Any

import apache_beam as beam

from neural_ingest.config import AnySourceConfig
from neural_ingest.metadata import MetadataError, json_value, lone_surrogate
from neural_ingest.records import PREPARE, Document, content_id
from neural_ingest.transforms import counters, positions
from neural_ingest.transforms.chunks import Chunk
from neural_ingest.transforms.counters import DEAD_LETTER, SKIPPED, DeadLetterOutput
from neural_ingest.transforms.positions import POSITION, pop_position


def _nan(value: Any) -> bool:
    """NaN or infinity (a float column's missing value, as pandas writes it): no text, as null is none."""
    return isinstance(value, float) and not math.isfinite(value)


def record_id(record: dict[str, Any], id_field: str) -> tuple[str, tuple[str, str] | None]:
    """The record's id (stripped, as text) and None, or "" and (reason, message) of why it has none usable
    (missing_id, invalid_id): the one id rule of PrepareFn and the public WriteToOpenSearch."""
    raw_id = record.get(id_field)
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        return "", ("missing_id", f"id field {id_field!r} is missing or empty: add it to the record or set id_field")
    doc_id = str(raw_id).strip()
    if lone_surrogate(doc_id):
        return "", ("invalid_id", f"id field {id_field!r} holds a lone surrogate, which is not Unicode")
    if len(doc_id) > 128 and len(doc_id.encode("utf-8")) > 512:  # 4 bytes a character at most
        return "", ("invalid_id", "id is longer than OpenSearch's 512-byte _id limit")
    return doc_id, None


class PrepareFn(counters.Tallied, beam.DoFn):
    """Record -> Document, or its dead letter / skip (``text_field.<f>`` counted once a bundle)."""

    def __init__(self, cfg: AnySourceConfig):
        self.cfg = cfg
        self._text_counters = [(f, f"text_field.{f}") for f in cfg.text_fields]  # names built once, not per record

    def _dead(self, reason: str, message: str, record: Any, doc_id: str | None = None) -> DeadLetterOutput:
        return counters.dead_letter(PREPARE, reason, message, record, doc_id=doc_id)

    def process(self, record: dict[str, Any]) -> Iterable[Any]:
        yield self._prepare(record)

    def _prepare(self, record: dict[str, Any]) -> Any:
        record, position = pop_position(record)  # (file, n) from the reader, for keep-the-last deduplication
        try:
            out = self._output(record)
        except Exception as e:  # noqa: BLE001 - one record must never fail the run: it is a dead letter
            out = self._dead("prepare_error", f"{type(e).__name__}: {str(e)[:2000]}", record)
        if self.cfg.deduplicate and type(out) is Document:
            out.position = position
        return out

    def _output(self, record: dict[str, Any], build: bool = True) -> Any:
        """The record's one outcome: a Document (without ``build``: only its id, for the duplicate-id pass), a dead
        letter or a skip (one pass over the text fields)."""
        c = self.cfg
        if not isinstance(record, dict):
            return self._dead("not_an_object", f"expected a record (object), got {type(record).__name__}", record)
        present: list[str] = []
        parts: list[str] = []  # the text fields' values that hold more than whitespace, in field order
        not_text: list[str] = []
        not_unicode: list[str] = []
        for f, counter in self._text_counters:
            value = record.get(f)
            if value is None or _nan(value):
                continue
            present.append(f)
            if build:  # the summary's text_fields (a field no record has is warned about): the run's read, not the id pass
                self.count(counter)
            if type(value) is str:
                if not value.isascii() and lone_surrogate(value):  # isascii: O(1), no UTF-8 encoding of the text
                    not_unicode.append(f)
                elif not value.isspace() and value:
                    parts.append(value)
            elif isinstance(value, (str, int, float)):
                if isinstance(value, str) and lone_surrogate(value):
                    not_unicode.append(f)
                elif (text := str(value)).strip():
                    parts.append(text)
            else:
                not_text.append(f)
        if not present:
            return self._dead("missing_text", f"none of the text fields {c.text_fields} is present", record)
        if not_text:
            return self._dead("invalid_text", f"text field(s) {not_text} are not strings", record)
        if not_unicode:
            return self._dead(
                "invalid_unicode", f"text field(s) {not_unicode} hold a lone surrogate, which is not Unicode", record
            )
        text = c.text_separator.join(parts)
        raw_metadata = {f: record[f] for f in c.metadata_fields if f in record}
        try:
            metadata = json_value(raw_metadata)
        except MetadataError as e:
            return self._dead("invalid_metadata", f"metadata {e}", record)
        doc_id: str
        if c.id_field is None:
            doc_id = content_id(text, raw_metadata)  # as before the JSON forms: ids of earlier runs stay
        else:
            doc_id, problem = record_id(record, c.id_field)
            if problem:
                return self._dead(*problem, record)
        if not parts:  # every present text field empty or whitespace (a part holds more): nothing to embed
            return counters.skip_record(PREPARE, "empty_text", "text is empty or only whitespace", record, doc_id)
        if not build:
            return doc_id
        return Document(id=doc_id, text=text, metadata=metadata, source=record)


class PrepareChunkFn(PrepareFn):
    """A list of records -> one list of their Documents (PrepareFn's rules for each; dead letters and skips
    one a record, as they come): one Beam element a chunk."""

    def process(self, records: Any) -> Iterable[Any]:
        docs: list[Document] = []
        keep = docs.append
        one = self._prepare
        for record in records:
            out = one(record)
            if type(out) is Document:
                keep(out)
            else:
                yield out
        if docs:
            yield docs


class PrepareDocuments(beam.PTransform[beam.PCollection[Any], dict[str, beam.PCollection[Any]]]):
    """dicts -> {"documents": Documents, "dead_letter": DeadLetters, "skipped": DeadLetters}.

    ``reread``: the source's reader once more (a fresh ``ReadRecords``), so duplicate ids are found from
    (id, position) pairs of a second, uncounted read and the documents stream on without being held;
    without it the documents are grouped by id (a source without positions: an index, a test's Create).
    ``chunked``: the records come as lists (``ReadRecords(chunked=True)``, the reread too) and the documents
    leave as lists, one Beam element a chunk; the rules, dead letters and counts are the same."""

    def __init__(self, cfg: AnySourceConfig, reread: beam.PTransform[Any, Any] | None = None, chunked: bool = False):
        super().__init__()
        self.cfg = cfg
        self.reread = reread
        self.chunked = chunked

    def expand(self, records: beam.PCollection[Any]) -> dict[str, beam.PCollection[Any]]:
        prep = beam.ParDo(PrepareChunkFn(self.cfg)).with_output_types(Chunk) if self.chunked else beam.ParDo(PrepareFn(self.cfg))
        out = records | "Prepare" >> prep.with_outputs(DEAD_LETTER, SKIPPED, main="documents")
        docs, skipped = out.documents, [out[SKIPPED]]
        if self.cfg.deduplicate:
            pairs = None
            if self.reread is not None:
                pairs = records.pipeline | counters.UNCOUNTED >> IdPositions(self.cfg, self.reread, self.chunked)
            elif self.chunked:  # no positions: the documents are grouped by id, one a Beam element
                docs = docs | "Unchunk" >> beam.FlatMap(lambda chunk: chunk)
            dedup = docs | "DropDuplicateIds" >> DropDuplicateIds(
                self.cfg.type, pairs, chunked=self.chunked and pairs is not None
            )
            docs = dedup["documents"]
            skipped.append(dedup[SKIPPED])
        return {"documents": docs, DEAD_LETTER: out[DEAD_LETTER], SKIPPED: tuple(skipped) | "Skipped" >> beam.Flatten()}


class IdPositions(beam.PTransform[beam.pvalue.PBegin, beam.PCollection[Any]]):
    """PBegin -> (id, position) of every document, from a second read of the source: two small values a
    record, the ids the documents will have (PrepareFn's own rules). Its dead letters and counts are the
    first read's, so here they are dropped (and its steps left out of the summary: counters.UNCOUNTED)."""

    def __init__(self, cfg: AnySourceConfig, reread: beam.PTransform[Any, Any], chunked: bool = False):
        super().__init__()
        self.cfg = cfg
        self.reread = reread
        self.chunked = chunked  # lists of records in; (bucket, {id: (count, last position)}) out, one a bucket and chunk

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[Any]:
        records = (pbegin | "Read" >> self.reread)["records"]
        fn = IdAndPositionChunkFn(self.cfg) if self.chunked else IdAndPositionFn(self.cfg)
        pairs: beam.PCollection[Any] = records | "IdAndPosition" >> beam.ParDo(fn)
        return pairs


class IdAndPositionFn(PrepareFn):
    """PrepareFn's own rules, keeping only (id, position) of each Document: one step, and no dead letter
    or skip handed on (the first read's are the run's)."""

    def process(self, record: dict[str, Any]) -> Iterable[Any]:
        for out in super().process(record):
            if type(out) is Document:
                yield out.id, out.position


ID_BUCKETS = 32  # keys of the chunked id pass: (bucket, pairs of a chunk) elements, a few a chunk, not one an id


def id_bucket(doc_id: str) -> int:
    """The same bucket for an id in every process (crc32, not ``hash``: that is seeded per process)."""
    return zlib.crc32(doc_id.encode("utf-8", "surrogatepass")) % ID_BUCKETS


class IdAndPositionChunkFn(PrepareFn):
    """A list of records -> (bucket, {id: (count, last position)}) for the chunk's Documents (PrepareFn's
    rules), combined within the chunk: a few elements a chunk for CountAndLastPositions to merge."""

    def __init__(self, cfg: AnySourceConfig):
        super().__init__(cfg)
        self._names_position = POSITION in (cfg.id_field, *cfg.text_fields, *cfg.metadata_fields)  # then copy as PrepareFn

    def process(self, records: Any) -> Iterable[Any]:
        buckets: dict[int, dict[str, tuple[int, Any]]] = {}
        document_id = self._document_id
        for record in records:
            doc_id = document_id(record)
            if doc_id is not None:
                position = record.get(POSITION)
                acc = buckets.setdefault(id_bucket(doc_id), {})
                seen = acc.get(doc_id)
                acc[doc_id] = (1, position) if seen is None else (seen[0] + 1, _later(seen[1], position))
        yield from buckets.items()

    def _document_id(self, record: Any) -> str | None:
        """The id of the Document PrepareFn makes of ``record``, or None when it makes none: the same rules,
        without copying the record (its position stays in it: no rule reads that key) or building the Document."""
        if type(record) is not dict or self._names_position:
            out = self._prepare(record)
            return out.id if type(out) is Document else None
        try:
            out = self._output(record, build=False)
        except Exception:  # noqa: BLE001 - PrepareFn's prepare_error: a dead letter, not a Document
            return None
        return out if type(out) is str else None


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


def _later(a: tuple[str, int] | None, b: tuple[str, int] | None) -> tuple[str, int] | None:
    """The later of two source positions (file, then byte offset / line / row); a known one beats None."""
    return max(a, b, key=lambda w: (w is not None, w or ("", 0)))


class _CountLastCoder(beam.coders.Coder):
    """(count, (file, n)) as FastPrimitivesCoder writes it, with the file path interned when read back: the
    local runner's shuffle holds one accumulator per id, and one copy of each path instead of one a document."""

    _inner = beam.coders.FastPrimitivesCoder()

    def encode(self, value: Any) -> bytes:
        encoded: bytes = self._inner.encode(value)
        return encoded

    def decode(self, encoded: bytes) -> Any:
        count, last = self._inner.decode(encoded)
        return count, (None if last is None else (sys.intern(last[0]), last[1]))

    def is_deterministic(self) -> bool:
        return True

    def to_type_hint(self) -> Any:
        return Any


class CountAndLastPosition(beam.CombineFn):
    """positions of one id -> (how many, the last in source order): two small values an id however many
    copies it has, combined before the shuffle (no list of every position)."""

    def __init__(self) -> None:
        beam.CombineFn.__init__(self)  # Beam's own (unannotated) __init__, named: mypy takes super()'s for ours

    def create_accumulator(self) -> tuple[int, Any]:
        return 0, None

    def add_input(self, acc: tuple[int, Any], position: Any) -> tuple[int, Any]:
        return acc[0] + 1, _later(acc[1], None if position is None else tuple(position))

    def merge_accumulators(self, accs: Iterable[tuple[int, Any]]) -> tuple[int, Any]:
        count, last = 0, None
        for c, w in accs:
            count, last = count + c, _later(last, w)
        return count, last

    def extract_output(self, acc: tuple[int, Any]) -> tuple[int, Any]:
        return acc

    def get_accumulator_coder(self) -> beam.coders.Coder:
        return _CountLastCoder()


class _CountsLastCoder(beam.coders.Coder):
    """{id: (count, (file, n))} as FastPrimitivesCoder writes it, file paths interned when read back."""

    _inner = beam.coders.FastPrimitivesCoder()

    def encode(self, value: Any) -> bytes:
        encoded: bytes = self._inner.encode(value)
        return encoded

    def decode(self, encoded: bytes) -> Any:
        return {k: (c, None if w is None else (sys.intern(w[0]), w[1])) for k, (c, w) in self._inner.decode(encoded).items()}

    def is_deterministic(self) -> bool:
        return True

    def to_type_hint(self) -> Any:
        return Any


class CountAndLastPositions(beam.CombineFn):
    """CountAndLastPosition for a bucket of ids at once: {id: (count, last position)} maps (IdAndPositionChunkFn's,
    one a chunk) merged into one; the output keeps only the ids seen more than once. One small entry an id,
    as CountAndLastPosition keeps one accumulator an id."""

    def __init__(self) -> None:
        beam.CombineFn.__init__(self)  # Beam's own (unannotated) __init__, named: mypy takes super()'s for ours

    def create_accumulator(self) -> dict[str, tuple[int, Any]]:
        return {}

    def add_input(self, acc: dict[str, tuple[int, Any]], counts: dict[str, tuple[int, Any]]) -> dict[str, tuple[int, Any]]:
        for doc_id, (n, last) in counts.items():
            seen = acc.get(doc_id)
            acc[doc_id] = (n, last) if seen is None else (seen[0] + n, _later(seen[1], None if last is None else tuple(last)))
        return acc

    def merge_accumulators(self, accs: Iterable[dict[str, tuple[int, Any]]]) -> dict[str, tuple[int, Any]]:
        it = iter(accs)
        merged = next(it, None)
        if merged is None:
            return {}
        for other in it:
            acc = other
            if len(acc) > len(merged):
                merged, acc = acc, merged
            self.add_input(merged, acc)
        return merged

    def extract_output(self, acc: dict[str, tuple[int, Any]]) -> dict[str, tuple[int, Any]]:
        return {doc_id: v for doc_id, v in acc.items() if v[0] > 1}

    def get_accumulator_coder(self) -> beam.coders.Coder:
        return _CountsLastCoder()


class KeepLastFn(beam.DoFn):
    """Streams the documents: one whose id is in ``duplicates`` (id -> (count, last position)) and is not
    at the last position is skipped, as KeepOneFn would; every other one goes on, never held nor copied
    (its position stays on it: nothing after this step reads it)."""

    def __init__(self, source_type: str = "jsonl"):
        self.source_type = source_type

    def process(self, doc: Any, duplicates: dict[str, tuple[int, Any]]) -> Iterable[Any]:
        if type(doc) is not list:
            yield from self._one(doc, duplicates)
            return
        if not duplicates or not any(d.id in duplicates for d in doc):
            yield doc  # a chunk without duplicate ids goes on as it is
            return
        kept: list[Document] = []
        for d in doc:
            for out in self._one(d, duplicates):
                if type(out) is Document:
                    kept.append(out)
                else:
                    yield out
        if kept:
            yield kept

    def _one(self, doc: Document, duplicates: dict[str, tuple[int, Any]]) -> Iterable[Any]:
        dup = duplicates.get(doc.id)
        if dup is None or dup[1] == _where(doc.position):
            yield doc  # as is: a copy per document only to clear its (small) position would cost more than it saves
            return
        count, kept = dup
        yield counters.skip_record(
            PREPARE, "duplicate_id",
            f"id {doc.id!r} appears {count} times in this run; the last in source order "
            f"({positions.describe(kept, self.source_type)}) was kept, as an upsert would; "
            f"this one is at {positions.describe(doc.position, self.source_type)}",
            doc.source, doc.id,
        )


class DropDuplicateIds(beam.PTransform[beam.PCollection[Any], dict[str, beam.PCollection[Any]]]):
    """Documents -> {"documents": one per id, "skipped": the duplicates}.

    With ``positions`` ((id, position) of every document, from IdPositions) only those small pairs are
    combined per id into (count, last position) (CountAndLastPosition): the ids seen twice become a side
    input, and the documents stream past it (KeepLastFn): memory follows the number of ids (one small
    accumulator each), not the corpus. Without:
    one shuffle of the documents keyed by id (KeepOneFn), which holds them all on the local runner."""

    def __init__(self, source_type: str = "jsonl", positions: beam.PCollection[Any] | None = None, chunked: bool = False):
        super().__init__()
        self.source_type = source_type
        self.positions = positions
        self.chunked = chunked  # lists of Documents, and positions as (bucket, {id: (count, last)}) (IdAndPositionChunkFn)

    def expand(self, docs: beam.PCollection[Any]) -> dict[str, beam.PCollection[Any]]:
        if self.positions is not None and self.chunked:
            dups = (
                self.positions
                | "CountAndLastPositionById" >> beam.CombinePerKey(CountAndLastPositions())
                | "Duplicates" >> beam.FlatMap(lambda kv: kv[1].items())
            )
        elif self.positions is not None:
            dups = (
                self.positions
                | "CountAndLastPositionById" >> beam.CombinePerKey(CountAndLastPosition())
                | "Duplicates" >> beam.Filter(lambda kv: kv[1][0] > 1)
            )
        if self.positions is not None:
            keep = beam.ParDo(KeepLastFn(self.source_type), beam.pvalue.AsDict(dups))
            out = docs | "KeepLast" >> (keep.with_output_types(Chunk) if self.chunked else keep).with_outputs(
                SKIPPED, main="documents"
            )
            return {"documents": out.documents, SKIPPED: out[SKIPPED]}
        out = (
            docs
            | "KeyById" >> beam.Map(lambda d: (d.id, d))
            | "GroupById" >> beam.GroupByKey()
            | "KeepOne" >> beam.ParDo(KeepOneFn(self.source_type)).with_outputs(SKIPPED, main="documents")
        )
        return {"documents": out.documents, SKIPPED: out[SKIPPED]}


def _where(position: Any) -> Any:
    """(file, n) of a position, without the raw-line digest a reindex build's reader may add as a third item."""
    return tuple(position[:2]) if position is not None and len(position) > 2 else position
