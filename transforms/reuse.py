"""Incremental re-embedding for ``reindex``: reuse the live index's vectors where nothing changed.

Every document is stamped with ``neural_ingest: {content_sha256, doc_sha256, model}`` (the hash of the
text that is embedded, of text + metadata, and the model identity hash).

File sources (``CloneChanges``, the scale path): the new index is a ``_clone`` of the live one and
only the changes are written into it. The source is read and prepared once, down to (id, position,
document digest) batches per partition of the ids; the live index's stamps are read in slices (for JSONL
while the source is scanned), or for JSONL taken from the live index's committed stamps manifest
(transforms/manifest.py), when a line whose raw bytes a live document came from is not even parsed; one
GroupByKey per partition joins them. Unchanged documents go no
further; only the records to write are read back, by byte offset for JSONL (docs/reindexing.md,
"Reindex at scale").

Index sources (``ReuseStoredVectors``): the live index is read (point in time, slices) and
joined with the source by id (CoGroupByKey):

- same text hash and model identity, every encoder field present and valid: the stored vectors are
  reused (counter ``reused``) and the document skips encoding;
- new, changed, or stored by another model: encoded as usual;
- in the live index but no longer in the source: not carried into the new index (counter ``deleted``).

Metadata always comes from the source, so metadata-only changes land without re-encoding.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import queue
import threading
import zlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

import apache_beam as beam
import numpy as np

from neural_ingest.config import OpenSearchSinkConfig, OpenSearchSourceConfig, SourceConfig
from neural_ingest.encoders.base import ModelInfo, vector_problem
from neural_ingest.fingerprint import content_hash
from neural_ingest.model_info import Vector
from neural_ingest.records import DeadLetter, Document
from neural_ingest.transforms import counters
from neural_ingest.transforms.manifest import (
    NO_MANIFEST,
    ManifestOut,
    ManifestRef,
    ManifestRows,
    Row,
    StampRowsFn,
    block,
    line_digest,
    short,
)

if TYPE_CHECKING:
    from neural_ingest.transforms.read_opensearch import SliceSpec

STAMP_FIELD = "neural_ingest"  # object field (enabled: false) in every document reindex writes
READY = "ready"
REUSED, DELETED = "reused", "deleted"


def doc_hash(text: str, metadata: dict[str, Any]) -> str:
    """Hash of what the indexed document holds besides its vectors: a metadata-only change shows here only."""
    body = json.dumps([text, metadata], sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def stamp(doc: Document, model_hash: str) -> Document:
    mark = {"content_sha256": content_hash(doc.text), "doc_sha256": doc_hash(doc.text, doc.metadata), "model": model_hash}
    return dataclasses.replace(doc, metadata={**doc.metadata, STAMP_FIELD: mark})


def stored_vectors(stored: dict[str, Any], fields: dict[str, ModelInfo]) -> dict[str, Vector] | None:
    """The stored document's vectors, as the encoders would have produced them; None if any is
    missing or would not pass the checks a freshly encoded vector must pass."""
    out: dict[str, Vector] = {}
    for name, info in fields.items():
        value = stored.get(name)
        if value is None:
            return None
        if info.kind == "sparse":
            if not isinstance(value, dict):
                return None
            vec: Vector = {str(k): float(v) for k, v in value.items()}  # sparse: {token: weight}
        else:
            if not isinstance(value, list):
                return None
            vec = np.asarray(value, dtype=np.float32)  # dense: a float32 array, as an encoder returns it
        if vector_problem(vec, info):
            return None
        out[name] = vec
    return out


def reused(doc: Document, vectors: dict[str, Vector], progress_every: float) -> beam.pvalue.TaggedOutput[str, Document]:
    """``doc`` with its stored vectors, counted ``reused``, on the ``ready`` output (it skips encoding)."""
    counters.inc(REUSED)
    counters.Progress.add("reused", 1, progress_every)
    return beam.pvalue.TaggedOutput(READY, dataclasses.replace(doc, embeddings={**doc.embeddings, **vectors}))


class MatchStoredFn(beam.DoFn):
    """(id, {"source": [Document], "stored": [dict]}) -> Documents to encode; tagged ``ready``: reused."""

    def __init__(self, fields: dict[str, ModelInfo], model_hash: str, reuse: bool, progress_every: float = 10.0):
        self.fields = fields
        self.model_hash = model_hash
        self.reuse = reuse
        self.progress_every = progress_every

    def process(self, item: tuple[str, dict[str, Iterable[Any]]]) -> Iterable[Any]:
        _id, grouped = item
        docs = list(grouped["source"])
        stored = next(iter(grouped["stored"]), None)
        if not docs:
            if stored is not None:
                counters.inc(DELETED)
            return
        for doc in docs:
            vectors = self._reusable(doc, stored)
            if vectors is None:
                yield doc
                continue
            yield reused(doc, vectors, self.progress_every)

    def _reusable(self, doc: Document, stored: dict[str, Any] | None) -> dict[str, Vector] | None:
        if not self.reuse or stored is None or getattr(doc, "chunks", None) is not None:
            return None
        mark = stored.get(STAMP_FIELD)
        if not isinstance(mark, dict) or mark.get("model") != self.model_hash:
            return None
        if mark.get("content_sha256") != doc.metadata[STAMP_FIELD]["content_sha256"]:
            return None
        return stored_vectors(stored, self.fields)


class ReuseStoredVectors(beam.PTransform[beam.PCollection[Any], dict[str, beam.PCollection[Any]]]):
    """Documents -> {"documents": to encode, "ready": with reused vectors}, all stamped.

    ``stored``: the live index to read (None on a first run: everything is encoded). ``reuse``:
    False reads only ids (a model change or ``--full``): nothing is reused, deletions still count.
    """

    def __init__(
        self,
        fields: dict[str, ModelInfo],
        model_hash: str,
        stored: OpenSearchSourceConfig | None,
        reuse: bool = True,
        progress_every: float = 10.0,
        manifest_out: ManifestOut | None = None,
    ):
        super().__init__()
        self.fields = fields
        self.model_hash = model_hash
        self.stored = stored
        self.reuse = reuse
        self.progress_every = progress_every
        self.manifest_out = manifest_out if stored is None else None  # a first build of a JSONL source writes one
        self.line_digests = self.manifest_out is not None

    def expand(self, docs: beam.PCollection[Any]) -> dict[str, beam.PCollection[Any]]:
        from neural_ingest.transforms.read_opensearch import ReadFromOpenSearch

        model_hash = self.model_hash
        stamped = docs | "Stamp" >> beam.Map(stamp, model_hash)
        if self.stored is None:
            _manifest_rows(stamped, self.manifest_out)
            return {"documents": stamped}
        includes = [STAMP_FIELD, *self.fields] if self.reuse else [STAMP_FIELD]
        stored = docs.pipeline | "ReadLiveIndex" >> ReadFromOpenSearch(self.stored, includes=includes, count_read=False)
        grouped = {
            "source": stamped | "KeySource" >> beam.Map(lambda d: (d.id, d)),
            "stored": stored["records"] | "KeyStored" >> beam.Map(lambda r: (r["_id"], r)),
        } | "JoinById" >> beam.CoGroupByKey()
        out = grouped | "Match" >> beam.ParDo(
            MatchStoredFn(self.fields, model_hash, self.reuse, self.progress_every)
        ).with_outputs(READY, main="documents")
        return {"documents": out.documents, READY: out[READY]}


# --------------------------------------------------------------------------- the clone path (file sources)
SRC, LIVE, KNOWN = 0, 1, 2  # KNOWN: lines whose bytes are a manifest row's, as (path, row numbers, byte offsets)
ENCODE, VECTORS = "encode", "vectors"  # what a written document needs: encoding, or its stored vectors
NEW, CHANGED, GONE = 0, 1, 2  # a source id absent from the live index; present but changed; a live id gone from the source
FETCH, DUPLICATES, ROWS = "fetch", "duplicates", "rows"
PARTITIONS = 64  # the join's keys: stamps travel in batches per partition of the ids, never one element per document
_BATCH = 2000  # stamps per batch
_DIGEST = 16  # hex characters of a stamp hash an older join carried (digests now travel as manifest.short ints)
_BLOCK = 64 << 20  # JSONL is scanned in byte ranges of this size (a compressed file whole), read back in the same blocks

# What the join carries, in batches per partition of the ids (no element per document):
SourceStamp: TypeAlias = tuple[Any, ...]  # (id, position, doc digest[, text digest, raw-line digest]) of a source record
LiveStamp: TypeAlias = tuple[str, int | None, int | None, bool]  # (id, doc digest, text digest, same model) of a live one
StampBatch: TypeAlias = tuple[int, list[Any]]  # (SRC | LIVE, its stamps)


def partition(doc_id: str) -> int:
    """Stable across processes and runs (Python's hash() is not)."""
    return zlib.crc32(doc_id.encode("utf-8", "surrogatepass")) % PARTITIONS


def doc_digest(doc: Document) -> int:
    """The short form of the stamp's doc_sha256 (manifest.short): equal only when text and metadata are (so the
    text hash is needed only for the changed documents, to tell a metadata-only change)."""
    return short(doc_hash(doc.text, doc.metadata))


def _source_key(where: Any) -> tuple[bool, Any]:
    return where is not None, where or ("", 0)


class Change(NamedTuple):
    """What the clone needs for one id: ``kind`` NEW / CHANGED (written; a CHANGED one is deleted from the clone
    first) or GONE (deleted); ``live_content``: the live text digest when the stored vectors are the same
    model's (a written document whose text hash matches it reuses them); ``kept``: the source position of the
    copy that is written; ``others``: the positions of the other copies of the id."""

    kind: int
    live_content: Any = None
    kept: Any = None
    others: tuple[Any, ...] = ()
    raw: int = 0  # the kept line's raw digest (0: unknown): the line read back must still be it


def join_stamps(source: Iterable[SourceStamp], live: Iterable[LiveStamp], dedupe: bool = True,
                rows: list[Row] | None = None) -> Iterable[tuple[str, Any]]:
    """(id, position, doc digest) of every source record and (id, doc digest, text digest, same model) of every
    live document, of one partition -> ("unchanged", (id, copies)) for an id the clone already holds and
    ("change", (id, Change)) for one it must write or delete. The last copy in source order is the one that
    counts (the copy deduplication keeps; with ``deduplicate: false`` every copy follows it).

    A source stamp may carry (text digest, raw-line digest) after the doc digest; then ``rows`` (a list) receives
    (id, raw, doc digest, text digest) of every id the clone will hold: the new index's manifest rows."""
    stamps = {s[0]: s[1:] for s in live}
    seen: dict[str, list[Any]] = {}
    for doc_id, pos, digest, *extra in source:
        cur = seen.get(doc_id)
        if cur is None:
            seen[doc_id] = [pos, digest, None, extra]
            continue
        others = cur[2] = cur[2] or []
        if _source_key(pos) >= _source_key(cur[0]):
            others.append(cur[0])
            cur[0], cur[1], cur[3] = pos, digest, extra
        else:
            others.append(pos)
    for doc_id, (pos, digest, other_positions, extra) in seen.items():
        mark = stamps.pop(doc_id, None)
        others = tuple(other_positions or ())
        content, raw = extra if extra else (None, 0)
        if mark is None:
            yield "change", (doc_id, Change(NEW, None, pos, others, raw))
        else:
            live_doc, live_content, same_model = mark
            if same_model and live_doc == digest:
                content = live_content
                yield "unchanged", (doc_id, pos, others)
            else:
                yield "change", (doc_id, Change(CHANGED, live_content if same_model else None, pos, others, raw))
        if rows is not None and content is not None:
            rows.append((doc_id, raw, digest, content))
    for doc_id in stamps:
        yield "change", (doc_id, Change(GONE))


class JoinStampsFn(beam.DoFn):
    """(partition, [(SRC | LIVE, batch of stamps)]) -> (id, Change) to delete / write; tagged ``fetch``: the
    source positions to read back (written documents, and the other copies of a duplicate id, which are listed
    as skipped); tagged ``duplicates``: (id, (copies, kept position)) for deduplication. Unchanged documents are
    counted here (``indexed``, ``reused``) and go no further: the clone holds them."""

    def __init__(self, dedupe: bool, progress_every: float = 10.0, manifest: ManifestRef | None = None,
                 rows: bool = False):
        self.dedupe = dedupe
        self.progress_every = progress_every
        self.manifest = manifest  # the live stamps come from the live index's manifest, not from LIVE batches
        self.rows = rows and dedupe  # emit the new index's manifest rows (tagged ``rows``)

    def process(self, item: tuple[int, Iterable[StampBatch]]) -> Iterable[Any]:
        part, batches = item[0], list(item[1])
        source: Iterable[SourceStamp] = (s for side, batch in batches if side == SRC for s in batch)
        live: Iterable[LiveStamp]
        unchanged = 0
        if self.manifest is not None:
            source, live, unchanged, kept = _known_lines(self.manifest, part, batches)
            if self.rows and len(kept[0]):
                yield beam.pvalue.TaggedOutput(ROWS, (part, kept))
        else:
            live = (s for side, batch in batches if side == LIVE for s in batch)
        rows: list[Row] | None = [] if self.rows else None
        for what, (doc_id, *rest) in join_stamps(source, live, self.dedupe, rows):
            if what == "unchanged":
                kept, others = rest
                unchanged += 1 if self.dedupe else 1 + len(others)  # deduplicate: false: every copy is a document
            else:
                kept, others = rest[0].kept, rest[0].others
                yield doc_id, rest[0]
            if others and self.dedupe:  # the other copies are read back only to be listed as skipped
                yield beam.pvalue.TaggedOutput(DUPLICATES, (doc_id, (1 + len(others), kept)))
                for pos in others:
                    yield beam.pvalue.TaggedOutput(FETCH, (doc_id, pos))
        if rows:
            yield beam.pvalue.TaggedOutput(ROWS, (part, block(rows)))
        counters.inc("indexed", unchanged)
        counters.inc(REUSED, unchanged)
        if unchanged:
            counters.Progress.add("reused", unchanged, self.progress_every)


def _known_lines(ref: ManifestRef, part: int, batches: list[StampBatch]
                 ) -> tuple[list[SourceStamp], list[LiveStamp], int, tuple[list[str], np.ndarray]]:
    """The manifest's side of a partition's join, in arrays: a live document whose line the scan saw exactly once
    (KNOWN) and whose id no other line of the source carries is unchanged, counted and its manifest row kept as it
    is, with no tuple made for it. Every other live document (unseen, seen twice, or whose id is also on a parsed
    line) and the parsed lines go through join_stamps as before. Returns (source stamps, live stamps, unchanged,
    (ids, digests) of the unchanged rows)."""
    from neural_ingest.transforms.manifest import load

    ids, nums = load(ref).rows(part)
    source = [s for side, batch in batches if side == SRC for s in batch]
    known = [batch for side, batch in batches if side == KNOWN]
    rows = np.concatenate([np.frombuffer(b[1], dtype=np.int64) for b in known]) if known else np.zeros(0, dtype=np.int64)
    slow = np.bincount(rows, minlength=len(ids)) != 1  # unseen, or seen on two lines (the same bytes twice)
    if source:
        where = {doc_id: r for r, doc_id in enumerate(ids)}
        for s in source:
            r = where.get(s[0])
            if r is not None:
                slow[r] = True
    for path, rows_bytes, offsets_bytes in known:  # the positions of the live documents that need the whole join
        at = np.frombuffer(rows_bytes, dtype=np.int64)
        offsets = np.frombuffer(offsets_bytes, dtype=np.int64)
        for r, offset in zip(at[slow[at]].tolist(), offsets[slow[at]].tolist()):
            raw, d, c = nums[r].tolist()
            source.append((ids[r], (path, offset), d, c, raw))
    slow_rows = np.nonzero(slow)[0].tolist()
    live = [(ids[r], *nums[r, 1:].tolist(), True) for r in slow_rows]
    fast = np.nonzero(~slow)[0]
    return source, live, len(fast), ([ids[r] for r in fast.tolist()], nums[fast])


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


def _strip_eol(line: bytes) -> bytes:
    """As Beam's text source splits lines: on \\n, with a \\r before it dropped too."""
    if line.endswith(b"\n"):
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
    return line


def _open(path: str) -> Any:
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.open(path)  # compression from the name, as ReadFromText's AUTO: positions are in the decompressed stream


def lines_of(f: Any, start: int, end: float) -> Iterable[tuple[int, bytes]]:
    """(byte offset, line) of each line that starts in [start, end) of an open file: a line belongs to the range
    its first byte is in (the rule of Beam's text source, so the offsets are the ones ReadLinesWithOffsets gives)."""
    pos = 0
    if start > 0:
        f.seek(start - 1)
        pos = start - 1 + len(f.readline())  # the rest of the line that began before the range
    while pos < end:
        line = f.readline()
        if not line:
            return
        yield pos, _strip_eol(line)
        pos += len(line)


def block_lines(f: Any, start: int, end: float) -> Iterable[tuple[int, bytes]]:
    """lines_of for a seekable (uncompressed) file: the range read whole and split (what a night spends on its
    unchanged lines is this and their digests), the same (offset, line) pairs."""
    if end == math.inf:
        yield from lines_of(f, start, end)
        return
    pos = 0
    if start > 0:
        f.seek(start - 1)
        pos = start - 1 + len(f.readline())
    else:
        f.seek(0)
    if pos >= end:
        return
    data = f.read(int(end) - pos)
    if data and not data.endswith(b"\n"):
        data += f.readline()  # the last line starts in the range: all of it
    lines = data.split(b"\n")
    last = lines.pop()  # after the last \n: b"", or a last line with no line break (its \r is kept, as _strip_eol does)
    for line in lines:
        n = len(line) + 1
        yield pos, line[:-1] if line.endswith(b"\r") else line
        pos += n
    if last:
        yield pos, last


_CHUNK_LINES = 20_000  # lines digested and looked up at once (and between two looks at the live stamps read meanwhile)


def line_chunks(f: Any, start: int, end: float) -> Iterable[tuple[list[int], list[bytes]]]:
    """block_lines as (offsets, lines) lists of up to _CHUNK_LINES: what the scan digests and looks up at once."""
    offsets: list[int] = []
    lines: list[bytes] = []
    for offset, line in block_lines(f, start, end):
        offsets.append(offset)
        lines.append(line)
        if len(lines) >= _CHUNK_LINES:
            yield offsets, lines
            offsets, lines = [], []
    if lines:
        yield offsets, lines


def line_digests(lines: list[bytes]) -> np.ndarray:
    """manifest.line_digest of each line, as one uint64 array (the shift and the 0 -> 1 rule done at once)."""
    blake2b = hashlib.blake2b
    raw = np.frombuffer(b"".join([blake2b(line, digest_size=8).digest() for line in lines]), dtype=">u8").astype(np.uint64)
    raw >>= np.uint64(1)
    raw[raw == 0] = 1
    return raw


def jsonl_ranges(path: str, size: int) -> list[tuple[str, int, float]]:
    """(path, start, end) blocks of a JSONL file; a compressed one is one range (it cannot be split)."""
    from apache_beam.io.filesystem import CompressionTypes

    if CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED:
        return [(path, 0, math.inf)]
    return [(path, s, min(s + _BLOCK, size)) for s in range(0, max(size, 1), _BLOCK)]


class ScanJsonlFn(beam.DoFn):
    """(path, start, end) -> the records of that range, read and prepared once, as batches (partition, (SRC,
    [(id, (path, byte offset), doc digest)])): the run's one full pass over the source (its ``read``, dead
    letters and skips count; the documents themselves go no further). ParseJsonLine and PrepareFn's own rules.

    A SliceSpec of the live index (``live``) is read meanwhile by a thread of this DoFn, its pages down to LIVE
    batches (and DONE when the slice is read): OpenSearch's work on the stamps overlaps the parsing here
    instead of running as a stage of its own before or after it. Everything is emitted from the DoFn's own
    thread: during the scan, and what is left in finish_bundle."""

    def __init__(self, cfg: SourceConfig, live: OpenSearchSourceConfig | None = None, model_hash: str = "",
                 manifest: ManifestRef | None = None):
        self.cfg, self.live, self.model_hash, self.manifest = cfg, live, model_hash, manifest

    def setup(self) -> None:
        from neural_ingest.transforms.manifest import load
        from neural_ingest.transforms.prepare import PrepareFn
        from neural_ingest.transforms.read import ParseJsonLine

        self.parse, self.prepare = ParseJsonLine(self.cfg.encoding), PrepareFn(self.cfg)
        # raw-line digest -> where its manifest row is (partition << 32 | row): such a line is not parsed
        self.index = load(self.manifest) if self.manifest is not None else NO_MANIFEST

    def start_bundle(self) -> None:
        self.parse.start_bundle()
        self.prepare.start_bundle()
        self._readers: list[_StampsReader] = []
        self._pages: queue.Queue[Any] = queue.Queue(maxsize=4096)  # LIVE batches, _END, or a reader's exception

    def finish_bundle(self) -> Iterable[Any]:
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.windowed_value import WindowedValue

        self.parse.finish_bundle()
        self.prepare.finish_bundle()
        for out in self._drain(wait=True):
            if isinstance(out, beam.pvalue.TaggedOutput):
                yield beam.pvalue.TaggedOutput(out.tag, WindowedValue(out.value, 0, (GlobalWindow(),)))
            else:
                yield WindowedValue(out, 0, (GlobalWindow(),))

    def _drain(self, wait: bool = False) -> Iterable[Any]:
        """What the readers put in the queue so far; with ``wait``, until every reader is done."""
        while True:
            try:
                item = self._pages.get(block=wait and any(r.running for r in self._readers), timeout=1.0)
            except queue.Empty:
                if wait and any(r.running for r in self._readers):
                    continue
                return
            if isinstance(item, BaseException):  # a slice that cannot be read fails the run, as the reader would
                raise item
            if item is _END:
                continue
            yield item

    def process(self, item: Any) -> Iterable[Any]:
        from neural_ingest.transforms.read_opensearch import SliceSpec

        if isinstance(item, SliceSpec):
            if self.live is None:  # _ScanJsonl sends slices only with a live index to read
                raise ValueError("a slice of the live index to scan, but no live index configured")
            reader = _StampsReader(self.live, item, self.model_hash, self._pages)
            self._readers.append(reader)
            reader.start()
            return
        path, start, end = item
        parts: dict[int, list[SourceStamp]] = {}
        known_rows: list[np.ndarray] = []  # manifest codes (partition << 32 | row) and byte offsets of the known lines
        known_offsets: list[np.ndarray] = []
        with _open(path) as f:
            for offsets, lines in line_chunks(f, start, end):
                raws = line_digests(lines)
                codes, found = self.index.lookup(raws)  # the very bytes of a live document's line: its row, no parsing
                if found.any():
                    known_rows.append(codes[found])
                    known_offsets.append(np.asarray(offsets, dtype=np.int64)[found])
                for i in np.flatnonzero(~found).tolist():
                    yield from self._parsed(path, offsets[i], lines[i], int(raws[i]), parts)
                if self._readers:
                    yield from self._drain()
        codes = np.concatenate(known_rows) if known_rows else np.zeros(0, dtype=np.int64)
        self.parse.count("read", len(codes))
        for part, batch in parts.items():
            yield part, (SRC, batch)
        if len(codes):
            offsets_all = np.concatenate(known_offsets)
            part_of = codes >> 32
            order = np.argsort(part_of, kind="stable")
            bounds = np.flatnonzero(np.diff(part_of[order])) + 1
            for group in np.split(order, bounds):
                rows = (codes[group] & 0xFFFFFFFF).astype(np.int64)
                yield int(part_of[group[0]]), (KNOWN, (path, rows.tobytes(), offsets_all[group].tobytes()))
        yield from self._drain()

    def _parsed(self, path: str, offset: int, line: bytes, raw: int, parts: dict[int, list[SourceStamp]]) -> Iterable[Any]:
        """A line the manifest does not know: parsed and prepared, down to its stamp (batched per partition)."""
        for record in self.parse.process((path, offset, line)):
            if isinstance(record, beam.pvalue.TaggedOutput):
                yield record
                continue
            for out in self.prepare.process(record):
                if not isinstance(out, Document):
                    yield out
                    continue
                part = partition(out.id)
                batch = parts.setdefault(part, [])
                batch.append((out.id, (path, offset), doc_digest(out), short(content_hash(out.text)), raw))
                if len(batch) >= _BATCH:
                    yield part, (SRC, parts.pop(part))


_END = object()


class _StampsReader(threading.Thread):
    """Reads one slice of the live index (ReadSliceFn, stamps only) into a queue: LIVE batches, then DONE."""

    def __init__(self, live: OpenSearchSourceConfig, spec: SliceSpec, model_hash: str, out: queue.Queue[Any]):
        super().__init__(daemon=True, name=f"live-stamps-{spec.slice_id}")
        self.live, self.spec, self.model_hash, self.out = live, spec, model_hash, out
        self.running = True

    def run(self) -> None:
        from neural_ingest.transforms.read_opensearch import ReadSliceFn

        fn = ReadSliceFn(self.live, [STAMP_FIELD], count_read=False, page_fn=_live_stamps(self.model_hash))
        try:
            fn.setup()
            for out in fn.process(self.spec):
                self.out.put(out)
        except BaseException as e:  # noqa: BLE001 - handed to the DoFn's thread, which raises it
            self.out.put(e)
        finally:
            self.running = False
            self.out.put(_END)
            fn.teardown()


class FetchLinesFn(beam.DoFn):
    """((path, block), [byte offsets]) -> (path, offset, line), as ReadLinesWithOffsets yields them: only the lines
    of the records the clone needs, by seeking (forward, in order: a compressed file is read once at most)."""

    def __init__(self) -> None:
        beam.DoFn.__init__(self)  # Beam's own (unannotated) __init__, named: mypy takes super()'s for ours

    def process(self, item: tuple[tuple[str, int], Iterable[Any]]) -> Iterable[Any]:
        """Offsets, or (offset, raw-line digest) pairs: a line whose bytes are no longer the ones classified (the
        source changed under the run) is a dead letter (``source_changed``) instead."""
        (path, _), offsets = item
        wanted = sorted({o if isinstance(o, tuple) else (o, 0) for o in offsets})
        with _open(path) as f:
            for offset, raw in wanted:
                f.seek(offset)
                line = _strip_eol(f.readline())
                if raw and line_digest(line) != raw:
                    yield beam.pvalue.TaggedOutput(counters.DEAD_LETTER, _changed_line(path, offset, line))
                    continue
                yield path, offset, line


def _changed_line(path: str, offset: int, line: bytes) -> DeadLetter:
    from neural_ingest.records import READ

    return DeadLetter(READ, "source_changed", f"the line at byte {offset} of {path} is not the one this run classified "
                      "there: the source changed during the run; run again once it is complete", {"file": path, "line": line})


_STAMPS_PAGE, _STAMPS_SLICES = 2000, 2


def stamps_reader(live: OpenSearchSourceConfig) -> OpenSearchSourceConfig:
    """The live reader for the stamps only: a hit is a few digests, so pages of 2,000 and at least two slices
    (read by parallel threads) instead of the vector reader's 200 in one. Read alone: 100,000 stamps 3.6 s -> 1.7 s,
    1,000,000 28.6 s -> 16.3 s; it overlaps the source scan, which stays the longer part of a night."""
    return live.model_copy(update={"page_size": max(live.page_size, _STAMPS_PAGE),
                                   "slices": max(live.slices or 1, _STAMPS_SLICES)})


def _live_stamps(model_hash: str) -> Callable[[list[dict[str, Any]]], Iterable[tuple[int, StampBatch]]]:
    """A page of live hits -> (partition, (LIVE, [(id, doc digest, text digest, same model)])) batches."""

    def page(hits: list[dict[str, Any]]) -> Iterable[tuple[int, StampBatch]]:
        parts: dict[int, list[LiveStamp]] = {}
        for hit in hits:
            mark = (hit.get("_source") or {}).get(STAMP_FIELD)
            doc_id = hit["_id"]
            stamp_: LiveStamp
            if isinstance(mark, dict):
                stamp_ = (doc_id, _short(mark.get("doc_sha256")), _short(mark.get("content_sha256")),
                          mark.get("model") == model_hash)
            else:
                stamp_ = (doc_id, None, None, False)
            parts.setdefault(partition(doc_id), []).append(stamp_)
        return [(part, (LIVE, batch)) for part, batch in parts.items()]

    return page


def _short(hexdigest: Any) -> int | None:
    try:
        return short(str(hexdigest))
    except ValueError:
        return None


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
        if change.live_content is not None and change.live_content in (content[:_DIGEST], short(content)):
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
                                                                page_fn=_live_stamps(self.model_hash)))["records"]
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
            | "ByBlock" >> beam.Map(lambda kv: ((kv[1][0], kv[1][1] // _BLOCK), (kv[1][1], kv[1][2] if len(kv[1]) > 2 else 0)))
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


class CountGone(beam.PTransform[beam.PCollection[Any], dict[str, beam.PCollection[Any]]]):
    """Documents -> {"documents": stamped}, for a full build next to a live index (a model change, ``--full``):
    everything is encoded into an empty index; the live index's ids are joined with the documents' ids only to
    count the documents gone from the source (``deleted``)."""

    def __init__(self, model_hash: str, live: OpenSearchSourceConfig, manifest_out: ManifestOut | None = None):
        super().__init__()
        self.model_hash, self.live, self.manifest_out = model_hash, live, manifest_out
        self.line_digests = manifest_out is not None  # build_ingest: the reader adds each line's digest

    def expand(self, docs: beam.PCollection[Any]) -> dict[str, beam.PCollection[Any]]:
        from neural_ingest.transforms.read_opensearch import ReadFromOpenSearch

        live = (docs.pipeline | "ReadLiveStamps" >> ReadFromOpenSearch(self.live, includes=[STAMP_FIELD], count_read=False,
                                                                        page_fn=_live_stamps(self.model_hash)))["records"]
        ids = docs | "Ids" >> beam.Map(lambda d: (partition(d.id), (SRC, [(d.id, None, "")])))
        _ = (
            (ids, live) | "BothSides" >> beam.Flatten() | "ByPartition" >> beam.GroupByKey()
            | "CountGone" >> beam.FlatMap(_count_gone)
        )
        stamped = docs | "Stamp" >> beam.Map(stamp, self.model_hash)
        _manifest_rows(stamped, self.manifest_out)
        return {"documents": stamped}


def _manifest_rows(stamped: beam.PCollection[Any], out: ManifestOut | None) -> None:
    """A full build's manifest rows, from the stamped documents (their raw-line digests from the reader)."""
    if out is not None:
        _ = stamped | "ManifestRows" >> beam.ParDo(StampRowsFn()) | "Manifest" >> ManifestRows(out)


def _count_gone(item: tuple[int, Iterable[StampBatch]]) -> list[Any]:
    batches = list(item[1])
    ids = {s[0] for side, batch in batches if side == SRC for s in batch}
    counters.inc(DELETED, len({s[0] for side, batch in batches if side == LIVE for s in batch} - ids))
    return []
