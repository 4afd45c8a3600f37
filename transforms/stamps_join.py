"""The join of a night: the source's stamps against the live index's, one partition of the ids at a time.

Stamps travel in batches per partition (never one element a document): (id, position, digests) of each source
record, and of each live document its digests, from the stamps read out of the index or from the committed
manifest (transforms/manifest.py), where the lines the scan recognised arrive as manifest row numbers and are
joined with numpy. The result per id: unchanged (counted, no further), or a Change to write or delete.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

import apache_beam as beam
import numpy as np

from neural_ingest.config import OpenSearchSourceConfig
from neural_ingest.records import Document
from neural_ingest.transforms import counters
from neural_ingest.transforms.manifest import (
    ManifestOut,
    ManifestRef,
    Row,
    block,
    partition,
    short,
)
from neural_ingest.transforms.reuse import DELETED, REUSED, STAMP_FIELD, doc_hash, manifest_rows, stamp

if TYPE_CHECKING:
    pass



# --------------------------------------------------------------------------- the clone path (file sources)
SRC, LIVE, KNOWN = 0, 1, 2  # KNOWN: lines whose bytes are a manifest row's, as (path, row numbers, byte offsets)
NEW, CHANGED, GONE = 0, 1, 2  # a source id absent from the live index; present but changed; a live id gone from the source
FETCH, DUPLICATES, ROWS = "fetch", "duplicates", "rows"
BATCH = 2000  # stamps per batch
DIGEST_HEX = 16  # hex characters of a stamp hash an older join carried (digests now travel as manifest.short ints)

# What the join carries, in batches per partition of the ids (no element per document):
SourceStamp: TypeAlias = tuple[Any, ...]  # (id, position, doc digest[, text digest, raw-line digest]) of a source record
LiveStamp: TypeAlias = tuple[str, int | None, int | None, bool]  # (id, doc digest, text digest, same model) of a live one
StampBatch: TypeAlias = tuple[int, list[Any]]  # (SRC | LIVE, its stamps)


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
                                                                        page_fn=live_stamps(self.model_hash)))["records"]
        ids = docs | "Ids" >> beam.Map(lambda d: (partition(d.id), (SRC, [(d.id, None, "")])))
        _ = (
            (ids, live) | "BothSides" >> beam.Flatten() | "ByPartition" >> beam.GroupByKey()
            | "CountGone" >> beam.FlatMap(_count_gone)
        )
        stamped = docs | "Stamp" >> beam.Map(stamp, self.model_hash)
        manifest_rows(stamped, self.manifest_out)
        return {"documents": stamped}


def _count_gone(item: tuple[int, Iterable[StampBatch]]) -> list[Any]:
    batches = list(item[1])
    ids = {s[0] for side, batch in batches if side == SRC for s in batch}
    counters.inc(DELETED, len({s[0] for side, batch in batches if side == LIVE for s in batch} - ids))
    return []


def live_stamps(model_hash: str) -> Callable[[list[dict[str, Any]]], Iterable[tuple[int, StampBatch]]]:
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
