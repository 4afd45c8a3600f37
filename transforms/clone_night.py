"""The clone night of a file source (``CloneChanges``): the new index is a ``_clone`` of the live one and only the
changes are written into it.

The source is read and prepared once, down to (id, position, document digest) batches per partition of the ids
(transforms/source_scan.py); the live index's stamps are read in slices (for JSONL while the source is scanned),
or for JSONL taken from the live index's committed stamps manifest (transforms/manifest.py); one GroupByKey per
partition joins them (transforms/stamps_join.py). Unchanged documents go no further; only the records to write are
read back, by byte offset for JSONL (docs/reindexing.md, "Reindex at scale").
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import apache_beam as beam

from neural_ingest.config import OpenSearchSinkConfig, OpenSearchSourceConfig, SourceConfig
from neural_ingest.encoders.base import ModelInfo
from neural_ingest.records import Document
from neural_ingest.transforms import counters
from neural_ingest.transforms.manifest import (
    PARTITIONS,
    ManifestOut,
    ManifestRef,
    ManifestRows,
    partition,
    short,
)
from neural_ingest.transforms.reuse import DELETED, READY, STAMP_FIELD, reused, stamp, stored_vectors
from neural_ingest.transforms.source_scan import BLOCK, FetchLinesFn, ScanJsonlFn, jsonl_ranges, stamps_reader
from neural_ingest.transforms.stamps_join import (
    DIGEST_HEX,
    DUPLICATES,
    FETCH,
    GONE,
    NEW,
    ROWS,
    SRC,
    Change,
    JoinStampsFn,
    doc_digest,
    live_stamps,
)

if TYPE_CHECKING:
    pass

ENCODE, VECTORS = "encode", "vectors"  # what a written document needs: encoding, or its stored vectors


class DeleteFromCloneFn(beam.DoFn):
    """A batch of (id, Change) -> deletes from the clone every id gone from the source (counter ``deleted``) and
    every changed id about to be written again (so a write that fails leaves it absent, as in a fresh index,
    never stale); passes each written (id, Change) on only once its delete is done, so nothing read back for
    it can reach the clone before."""

    def __init__(self, sink_cfg: OpenSearchSinkConfig):
        self.sink_cfg = sink_cfg

    def setup(self) -> None:
        from neural_ingest.sinks.opensearch_client import make_client

        self.client = make_client(self.sink_cfg)

    def teardown(self) -> None:
        self.client.close()

    def process(self, batch: list[tuple[str, Change]]) -> Iterable[Any]:
        from opensearchpy import helpers

        index = self.sink_cfg.index
        doomed = [i for i, c in batch if c.kind != NEW]
        if doomed:
            _, errors = helpers.bulk(self.client, ({"_op_type": "delete", "_index": index, "_id": i} for i in doomed),
                                     raise_on_error=False, max_retries=3, chunk_size=len(doomed))
            failed = [e for e in errors if (e.get("delete") or {}).get("status") != 404]
            if failed:  # the clone would keep documents the source no longer has: the run fails, the alias stays
                raise RuntimeError(f"could not delete {len(failed)} documents from {index}: {str(failed[:3])[:500]}")
        counters.inc(DELETED, sum(1 for _, c in batch if c.kind == GONE))
        for doc_id, c in batch:
            if c.kind != GONE:
                yield doc_id, c


class ChangesOnlyFn(beam.DoFn):
    """Documents read back + the side input {id: Change} -> stamped, to encode (main) or, when the text and model
    match the live stamp (a metadata-only change), tagged ``vectors`` (their stored vectors are fetched).
    ``strict`` (read back by position): a document the classification did not ask for means the source changed
    under the run: a dead letter (``source_changed``). Otherwise (the source read again whole) it is dropped: an
    unchanged one, counted by JoinStampsFn."""

    def __init__(self, model_hash: str, strict: bool, dedupe: bool):
        self.model_hash = model_hash
        self.strict = strict
        self.dedupe = dedupe

    def process(self, doc: Document, todo: dict[str, Change]) -> Iterable[Any]:
        change = todo.get(doc.id)
        if change is None or (self.strict and self.dedupe and doc.position != change.kept):
            if self.strict:
                yield _source_changed(doc)
            return
        doc = stamp(doc, self.model_hash)  # only what is written is stamped
        content = doc.metadata[STAMP_FIELD]["content_sha256"]
        if change.live_content is not None and change.live_content in (content[:DIGEST_HEX], short(content)):
            yield beam.pvalue.TaggedOutput(VECTORS, doc)
        else:
            yield doc


def _source_changed(doc: Document) -> counters.DeadLetterOutput:
    from neural_ingest.records import READ

    return counters.dead_letter(
        READ, "source_changed", f"the record read back at {doc.position} is not the one this run classified there: the "
        "source changed during the run; run again once it is complete", doc.source, doc_id=doc.id)


class StoredVectorsFn(beam.DoFn):
    """A batch of metadata-only changes -> each with its stored vectors (batched mget of the live index), tagged
    ``ready``; or, when they are missing or invalid, to encode (main)."""

    def __init__(self, fields: dict[str, ModelInfo], live: OpenSearchSourceConfig, progress_every: float = 10.0):
        self.fields = fields
        self.live = live
        self.progress_every = progress_every

    def setup(self) -> None:
        from neural_ingest.transforms.read_opensearch import client_for

        self.client = client_for(self.live)

    def teardown(self) -> None:
        self.client.close()

    def process(self, batch: list[Document]) -> Iterable[Any]:
        got = self.client.mget(index=self.live.index, body={"ids": [d.id for d in batch]},
                               params={"_source_includes": ",".join(self.fields)})
        stored = {d["_id"]: d.get("_source") for d in got["docs"] if d.get("found")}
        for doc in batch:
            vectors = stored_vectors(stored[doc.id], self.fields) if doc.id in stored else None
            if vectors is None:
                yield doc
                continue
            yield reused(doc, vectors, self.progress_every)


def _written_positions(item: tuple[str, Change], dedupe: bool) -> list[tuple[str, Any]]:
    """(id, Change) -> the positions to read back for it: the kept copy, and with ``deduplicate: false`` every copy."""
    doc_id, change = item
    return [(doc_id, (*change.kept, change.raw)), *([] if dedupe else [(doc_id, pos) for pos in change.others])]


def _count_failed(dead: Any) -> Any:
    """A dead letter of the read-back (whose steps are uncounted: the scan counted its records): the source
    changed under the run, and this is the record's fate, counted once here."""
    counters.failed(dead.stage, dead.error_type)
    return dead


def _count_skipped(dead: Any) -> Any:
    counters.skipped(dead.error_type)
    return dead


class CloneChanges(beam.PTransform[beam.pvalue.PBegin, dict[str, beam.PCollection[Any]]]):
    """PBegin -> {"documents": to encode, "ready": metadata-only changes with their stored vectors, "dead_letter",
    "skipped"}: an incremental night of a file source into ``sink``, a ``_clone`` of the ``live`` index.

    1. The source is read and prepared once (``read``, dead letters and skips count there), down to (id,
       position, doc digest) in batches per partition of the ids; the live index's stamps likewise, in slices.
    2. One GroupByKey per partition joins them (JoinStampsFn): unchanged ids are counted and go no further;
       changed and gone ids are deleted from the clone (DeleteFromCloneFn); the positions of the records to
       write (and of the other copies of a duplicate id) are all that is left.
    3. Only those records are read back (JSONL: by byte offset; other types: the source read again, uncounted,
       and filtered by id), prepared, deduplicated as a run does (KeepLastFn), stamped and routed: to the
       encoders, or with their stored vectors (batched mget) when only the metadata changed.
    """

    reads_source = True  # build_ingest: this transform reads and prepares the source itself

    def __init__(self, fields: dict[str, ModelInfo], model_hash: str, live: OpenSearchSourceConfig, source: SourceConfig,
                 sink: OpenSearchSinkConfig, progress_every: float = 10.0, manifest: ManifestRef | None = None,
                 manifest_out: ManifestOut | None = None):
        super().__init__()
        self.fields, self.model_hash, self.live, self.source = fields, model_hash, live, source
        self.sink, self.progress_every = sink, progress_every
        jsonl = source.type == "jsonl"
        self.manifest = manifest if jsonl else None  # the live index's committed manifest: no stamps read
        self.manifest_out = manifest_out if jsonl and source.deduplicate else None  # the new index's, written

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection[Any]]:
        from neural_ingest.transforms.counters import DEAD_LETTER, SKIPPED
        from neural_ingest.transforms.prepare import KeepLastFn
        from neural_ingest.transforms.read_opensearch import ReadFromOpenSearch

        p, cfg, dedupe = pbegin.pipeline, self.source, self.source.deduplicate
        jsonl, stamps_cfg = cfg.type == "jsonl", stamps_reader(self.live)
        if jsonl and self.manifest is not None:  # the live stamps come from the manifest, per partition
            scan = p | "ScanSource" >> _ScanJsonl(cfg, None, self.model_hash, self.manifest)
            every = p | "EveryPartition" >> beam.Create([(part, (SRC, [])) for part in range(PARTITIONS)])
            stamps = (scan["stamps"], every) | "BothSides" >> beam.Flatten()  # a partition left with no source id still joins
        elif jsonl:  # the live stamps are read while the source is scanned
            scan = p | "ScanSource" >> _ScanJsonl(cfg, stamps_cfg, self.model_hash)
            stamps = scan["stamps"]
        else:
            scan = p | "ScanSource" >> _ScanRecords(cfg)
            live = (p | "ReadLiveStamps" >> ReadFromOpenSearch(stamps_cfg, includes=[STAMP_FIELD], count_read=False,
                                                                page_fn=live_stamps(self.model_hash)))["records"]
            stamps = (scan["stamps"], live) | "BothSides" >> beam.Flatten()
        joined = (
            stamps
            | "ByPartition" >> beam.GroupByKey()
            | "JoinStamps" >> beam.ParDo(JoinStampsFn(dedupe, self.progress_every, self.manifest, self.manifest_out is not None))
            .with_outputs(FETCH, DUPLICATES, ROWS, main="changes")
        )
        if self.manifest_out is not None:
            _ = joined[ROWS] | "Manifest" >> ManifestRows(self.manifest_out)
        todo = (
            joined.changes
            | "DeleteBatches" >> beam.BatchElements(min_batch_size=500, max_batch_size=500)
            | "DeleteFromClone" >> beam.ParDo(DeleteFromCloneFn(self.sink))
        )
        skipped, dead = [scan[SKIPPED]], [scan[DEAD_LETTER]]
        if jsonl:
            written = todo | "WrittenPositions" >> beam.FlatMap(_written_positions, dedupe)
            wanted = (written, joined[FETCH]) | "ToReadBack" >> beam.Flatten()
            back = p | f"ReadBack{counters.UNCOUNTED}" >> _ReadBack(cfg, wanted)
            skipped.append(back[SKIPPED] | "CountSkippedBack" >> beam.Map(_count_skipped))
            dead.append(back[DEAD_LETTER] | "CountFailedBack" >> beam.Map(_count_failed))
            docs = back["documents"]
        else:
            docs = p | f"ReadAgain{counters.UNCOUNTED}" >> _ReadAgain(cfg, todo, joined[DUPLICATES])
        if dedupe:
            kept = docs | "KeepLast" >> beam.ParDo(KeepLastFn(cfg.type), beam.pvalue.AsDict(joined[DUPLICATES])).with_outputs(
                SKIPPED, main="documents")
            docs = kept.documents
            skipped.append(kept[SKIPPED])
        routed = docs | "ChangesOnly" >> beam.ParDo(
            ChangesOnlyFn(self.model_hash, strict=jsonl, dedupe=dedupe), beam.pvalue.AsDict(todo)
        ).with_outputs(VECTORS, DEAD_LETTER, main="documents")
        dead.append(routed[DEAD_LETTER])
        stored = (
            routed[VECTORS]
            | "MgetBatches" >> beam.BatchElements(min_batch_size=200, max_batch_size=200)
            | "StoredVectors" >> beam.ParDo(StoredVectorsFn(self.fields, self.live, self.progress_every)).with_outputs(
                READY, main="documents")
        )
        return {
            "documents": (routed.documents, stored.documents) | "ToEncode" >> beam.Flatten(),
            READY: stored[READY],
            DEAD_LETTER: tuple(dead) | "DeadLetters" >> beam.Flatten(),
            SKIPPED: tuple(skipped) | "Skipped" >> beam.Flatten(),
        }


class _ScanJsonl(beam.PTransform[beam.pvalue.PBegin, dict[str, beam.PCollection[Any]]]):
    """PBegin -> {"stamps", "dead_letter", "skipped"}: ScanJsonlFn over the files' byte ranges, and (``live``) the
    live index's stamps read in the same stage (a point in time per index, its slices; closed once all are read)."""

    def __init__(self, cfg: SourceConfig, live: OpenSearchSourceConfig | None = None, model_hash: str = "",
                 manifest: ManifestRef | None = None):
        super().__init__()
        self.cfg, self.live, self.model_hash, self.manifest = cfg, live, model_hash, manifest

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection[Any]]:
        from apache_beam.io import fileio

        from neural_ingest.transforms.counters import DEAD_LETTER, SKIPPED
        from neural_ingest.transforms.read_opensearch import (
            DONE,
            PITS,
            ClosePitFn,
            OpenPitsFn,
        )

        ranges = (
            pbegin
            | "Match" >> fileio.MatchFiles(self.cfg.path)
            | "Ranges" >> beam.FlatMap(lambda m: jsonl_ranges(m.path, m.size_in_bytes))
            | "SpreadRanges" >> beam.Reshuffle()
        )
        work, pits = ranges, None
        if self.live is not None:
            opened = pbegin | "Start" >> beam.Create([None]) | "OpenPits" >> beam.ParDo(OpenPitsFn(self.live)).with_outputs(
                PITS, main="slices")
            work, pits = (opened.slices, ranges) | "SlicesAndRanges" >> beam.Flatten(), opened[PITS]
        out = work | "Scan" >> beam.ParDo(ScanJsonlFn(self.cfg, self.live, self.model_hash, self.manifest)).with_outputs(
            DEAD_LETTER, SKIPPED, DONE, main="stamps")
        if pits is not None and self.live is not None:
            _ = pits | "ClosePits" >> beam.ParDo(ClosePitFn(self.live), done=beam.pvalue.AsList(out[DONE]))
        return {"stamps": out.stamps, DEAD_LETTER: out[DEAD_LETTER], SKIPPED: out[SKIPPED]}


class _ScanRecords(beam.PTransform[beam.pvalue.PBegin, dict[str, beam.PCollection[Any]]]):
    """PBegin -> {"stamps", "dead_letter", "skipped"} for CSV, Parquet and text files: the run's reader and
    PrepareFn, one stamp per element."""

    def __init__(self, cfg: SourceConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection[Any]]:
        from neural_ingest.transforms.counters import DEAD_LETTER, SKIPPED
        from neural_ingest.transforms.prepare import PrepareFn
        from neural_ingest.transforms.read import ReadRecords

        read = pbegin | "Read" >> ReadRecords(self.cfg)
        out = read["records"] | "Prepare" >> beam.ParDo(PrepareFn(self.cfg)).with_outputs(DEAD_LETTER, SKIPPED, main="documents")
        stamps = out.documents | "Stamp" >> beam.Map(lambda d: (partition(d.id), (SRC, [(d.id, d.position, doc_digest(d))])))
        dead = (read[DEAD_LETTER], out[DEAD_LETTER]) | "DeadLetters" >> beam.Flatten()
        return {"stamps": stamps, DEAD_LETTER: dead, SKIPPED: out[SKIPPED]}


class _ReadBack(beam.PTransform[beam.pvalue.PBegin, dict[str, beam.PCollection[Any]]]):
    """PBegin -> {"documents", "dead_letter", "skipped"} of the JSONL records at the positions in ``wanted`` ((id,
    (path, offset))), by seeking; under counters.UNCOUNTED (the scan counted them)."""

    def __init__(self, cfg: SourceConfig, wanted: beam.PCollection[Any]):
        super().__init__()
        self.cfg, self.wanted = cfg, wanted

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection[Any]]:
        from neural_ingest.transforms.counters import DEAD_LETTER, SKIPPED
        from neural_ingest.transforms.prepare import PrepareFn
        from neural_ingest.transforms.read import ParseJsonLine

        lines = (
            self.wanted
            | "ByBlock" >> beam.Map(lambda kv: ((kv[1][0], kv[1][1] // BLOCK), (kv[1][1], kv[1][2] if len(kv[1]) > 2 else 0)))
            | "GroupByBlock" >> beam.GroupByKey()
            | "Fetch" >> beam.ParDo(FetchLinesFn()).with_outputs(DEAD_LETTER, main="lines")
        )
        changed, lines = lines[DEAD_LETTER], lines.lines
        parsed = lines | "ParseJson" >> beam.ParDo(ParseJsonLine(self.cfg.encoding)).with_outputs(DEAD_LETTER, main="records")
        out = parsed.records | "Prepare" >> beam.ParDo(PrepareFn(self.cfg)).with_outputs(DEAD_LETTER, SKIPPED, main="documents")
        dead = (changed, parsed[DEAD_LETTER], out[DEAD_LETTER]) | "DeadLetters" >> beam.Flatten()
        return {"documents": out.documents, DEAD_LETTER: dead, SKIPPED: out[SKIPPED]}


class _ReadAgain(beam.PTransform[beam.pvalue.PBegin, beam.PCollection[Any]]):
    """PBegin -> documents: CSV, Parquet and text sources read and prepared again
    (uncounted), only the documents of the ids to write or deduplicate kept."""

    def __init__(self, cfg: SourceConfig, todo: beam.PCollection[Any], duplicates: beam.PCollection[Any]):
        super().__init__()
        self.cfg, self.todo, self.duplicates = cfg, todo, duplicates

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[Any]:
        from neural_ingest.transforms.counters import DEAD_LETTER, SKIPPED
        from neural_ingest.transforms.prepare import PrepareFn
        from neural_ingest.transforms.read import ReadRecords

        read = pbegin | "Read" >> ReadRecords(self.cfg)
        out = read["records"] | "Prepare" >> beam.ParDo(PrepareFn(self.cfg)).with_outputs(DEAD_LETTER, SKIPPED, main="documents")
        # its dead letters and skips are the scan's (a record that fails now failed then): not listed twice
        wanted: beam.PCollection[Any] = out.documents | "Wanted" >> beam.Filter(
            lambda d, todo, dups: d.id in todo or d.id in dups, beam.pvalue.AsDict(self.todo), beam.pvalue.AsDict(self.duplicates)
        )
        return wanted
