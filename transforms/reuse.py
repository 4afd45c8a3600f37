"""Incremental re-embedding for ``reindex``: reuse the live index's vectors where nothing changed.

Every document is stamped with ``neural_ingest: {content_sha256, doc_sha256, model}`` (the hash of the
text that is embedded, of text + metadata, and the model identity hash).

File sources (``CloneChanges``, the scale path): the new index is a ``_clone`` of the live one and
only the changes are written into it. Only small tuples are joined: (id, position, hashes) of a
second, uncounted read of the source and (id, stamp) of the live index read in slices with the stamp
field alone. The documents stream past a side input holding only the ids that need a write
(docs/reindexing.md, "Reindex at scale").

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
from typing import Any, Iterable

import apache_beam as beam
import numpy as np

from neural_ingest.config import OpenSearchSourceConfig
from neural_ingest.encoders.base import ModelInfo, vector_problem
from neural_ingest.fingerprint import content_hash
from neural_ingest.records import Document
from neural_ingest.transforms import counters

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


def stored_vectors(stored: dict[str, Any], fields: dict[str, ModelInfo]) -> dict[str, Any] | None:
    """The stored document's vectors, as the encoders would have produced them; None if any is
    missing or would not pass the checks a freshly encoded vector must pass."""
    out: dict[str, Any] = {}
    for name, info in fields.items():
        value = stored.get(name)
        if value is None:
            return None
        if info.kind == "sparse":
            if not isinstance(value, dict):
                return None
            vec: Any = {str(k): float(v) for k, v in value.items()}
        else:
            if not isinstance(value, list):
                return None
            vec = np.asarray(value, dtype=np.float32)
        if vector_problem(vec, info):
            return None
        out[name] = vec
    return out


def reused(doc: Document, vectors: dict[str, Any], progress_every: float) -> Any:
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

    def _reusable(self, doc: Document, stored: dict[str, Any] | None) -> dict[str, Any] | None:
        if not self.reuse or stored is None or getattr(doc, "chunks", None) is not None:
            return None
        mark = stored.get(STAMP_FIELD)
        if not isinstance(mark, dict) or mark.get("model") != self.model_hash:
            return None
        if mark.get("content_sha256") != doc.metadata[STAMP_FIELD]["content_sha256"]:
            return None
        return stored_vectors(stored, self.fields)


class ReuseStoredVectors(beam.PTransform):
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
    ):
        super().__init__()
        self.fields = fields
        self.model_hash = model_hash
        self.stored = stored
        self.reuse = reuse
        self.progress_every = progress_every

    def expand(self, docs: beam.PCollection) -> dict[str, beam.PCollection]:
        from neural_ingest.transforms.read_opensearch import ReadFromOpenSearch

        model_hash = self.model_hash
        stamped = docs | "Stamp" >> beam.Map(stamp, model_hash)
        if self.stored is None:
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
SRC, LIVE = 0, 1
ENCODE, VECTORS = "encode", "vectors"  # what a source document needs in the clone; unchanged ones are absent
_DIGEST = 16  # hex characters of each hash carried in the join: ids and short digests only, never documents


def _digests(doc: Document) -> tuple[str, str]:
    return content_hash(doc.text)[:_DIGEST], doc_hash(doc.text, doc.metadata)[:_DIGEST]


def _source_key(where: Any) -> tuple[bool, Any]:
    return where is not None, where or ("", 0)


class JoinStampsFn(beam.CombineFn):
    """Per id: the last source copy in source order (the one deduplication keeps) and the live stamp.
    Accumulator: (source (position, content, doc) or None, live (content, doc, same model) or None)."""

    def create_accumulator(self) -> tuple[Any, Any]:
        return None, None

    def add_input(self, acc: tuple[Any, Any], value: tuple) -> tuple[Any, Any]:
        return self.merge_accumulators([acc, (value[1:], None) if value[0] == SRC else (None, value[1:])])

    def merge_accumulators(self, accs: Iterable[tuple[Any, Any]]) -> tuple[Any, Any]:
        src = live = None
        for s, l in accs:
            if s is not None and (src is None or _source_key(s[0]) >= _source_key(src[0])):
                src = s
            live = l if l is not None else live
        return src, live

    def extract_output(self, acc: tuple[Any, Any]) -> tuple[Any, Any]:
        return acc


def classify(item: tuple[str, tuple[Any, Any]]) -> Iterable[tuple[str, tuple[str | None, bool]]]:
    """(id, joined) -> (id, (ENCODE | VECTORS, in the live index)) for a document that needs a write,
    (id, (None, True)) for one gone from the source; nothing for an unchanged one (the clone holds it)."""
    doc_id, (src, live) = item
    if src is None:
        if live is not None:
            yield doc_id, (None, True)
        return
    if live is None:
        yield doc_id, (ENCODE, False)
        return
    _, content, doc = src
    live_content, live_doc, same_model = live
    if not same_model or live_content != content:
        yield doc_id, (ENCODE, True)
    elif live_doc != doc:
        yield doc_id, (VECTORS, True)


def _live_stamp(model_hash: str):
    def key(record: dict[str, Any]) -> tuple[str, tuple]:
        mark = record.get(STAMP_FIELD)
        if not isinstance(mark, dict):
            return record["_id"], (LIVE, None, None, False)
        return record["_id"], (LIVE, str(mark.get("content_sha256", ""))[:_DIGEST], str(mark.get("doc_sha256", ""))[:_DIGEST],
                               mark.get("model") == model_hash)

    return key


class _Buffered(beam.DoFn):
    """Acts on batches of ``size`` elements; what is left goes in finish_bundle (as WindowedValues)."""

    size = 500

    def start_bundle(self) -> None:
        self._buf: list[Any] = []

    def process(self, element):  # no hints: Beam would check a subclass's side input against them
        self._buf.append(element)
        if len(self._buf) >= self.size:
            yield from self._flush()

    def finish_bundle(self) -> Iterable[Any]:
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.windowed_value import WindowedValue

        for out in self._flush():
            if isinstance(out, beam.pvalue.TaggedOutput):
                yield beam.pvalue.TaggedOutput(out.tag, WindowedValue(out.value, 0, [GlobalWindow()]))
            else:
                yield WindowedValue(out, 0, [GlobalWindow()])

    def _flush(self) -> Iterable[Any]:
        batch, self._buf = self._buf, []
        return self.act(batch) if batch else ()

    def act(self, batch: list[Any]) -> Iterable[Any]:
        raise NotImplementedError


class DeleteFromCloneFn(_Buffered):
    """(id, action) -> deletes from the clone every id gone from the source (counter ``deleted``) and every
    id about to be written again (so a write that fails leaves it absent, as in a fresh index, never
    stale); passes (id, action) on only once its delete is done, so the side input built from them cannot
    be read before the clone is ready for the writes."""

    def __init__(self, sink_cfg: Any):
        self.sink_cfg = sink_cfg

    def setup(self) -> None:
        from neural_ingest.sinks.opensearch_client import make_client

        self.client = make_client(self.sink_cfg)

    def teardown(self) -> None:
        self.client.close()

    def act(self, batch: list[tuple[str, tuple[str | None, bool]]]) -> Iterable[Any]:
        from opensearchpy import helpers

        index = self.sink_cfg.index
        doomed = [i for i, (_, in_live) in batch if in_live]
        if doomed:
            _, errors = helpers.bulk(self.client, ({"_op_type": "delete", "_index": index, "_id": i} for i in doomed),
                                     raise_on_error=False, max_retries=3, chunk_size=len(doomed))
            failed = [e for e in errors if (e.get("delete") or {}).get("status") != 404]
            if failed:  # the clone would keep documents the source no longer has: the run fails, the alias stays
                raise RuntimeError(f"could not delete {len(failed)} documents from {index}: {str(failed[:3])[:500]}")
        counters.inc(DELETED, sum(1 for _, (action, _) in batch if action is None))
        for doc_id, (action, _) in batch:
            if action is not None:
                yield doc_id, action


class ChangesOnlyFn(_Buffered):
    """Documents + the side input {id: action} -> only what the clone needs, stamped: unchanged ones are
    counted (``indexed``, ``reused``) and dropped (the clone holds them); ENCODE ones go on to the
    encoders; VECTORS ones (metadata changed) get their stored vectors by batched mget of the live
    index (tagged ``ready``), or are encoded when the stored vectors are missing or invalid."""

    size = 200

    def __init__(self, fields: dict[str, ModelInfo], live: OpenSearchSourceConfig, model_hash: str, progress_every: float = 10.0):
        self.fields = fields
        self.live = live
        self.model_hash = model_hash
        self.progress_every = progress_every

    def setup(self) -> None:
        from neural_ingest.transforms.read_opensearch import client_for

        self.client = client_for(self.live)

    def teardown(self) -> None:
        self.client.close()

    def process(self, doc: Document, todo: dict[str, str]) -> Iterable[Any]:
        action = todo.get(doc.id)
        if action is None:
            counters.inc("indexed")
            counters.inc(REUSED)
            counters.Progress.add("reused", 1, self.progress_every)
            return
        doc = stamp(doc, self.model_hash)  # only what is written is stamped (two hashes a document)
        if action == ENCODE:
            yield doc
            return
        yield from super().process(doc)

    def act(self, batch: list[Document]) -> Iterable[Any]:
        got = self.client.mget(index=self.live.index, body={"ids": [d.id for d in batch]},
                               params={"_source_includes": ",".join(self.fields)})
        stored = {d["_id"]: d.get("_source") for d in got["docs"] if d.get("found")}
        for doc in batch:
            vectors = stored_vectors(stored[doc.id], self.fields) if doc.id in stored else None
            if vectors is None:
                yield doc
                continue
            yield reused(doc, vectors, self.progress_every)


class CloneChanges(beam.PTransform):
    """Documents (of a file source) -> {"documents": to encode, "ready": metadata-only changes with their
    stored vectors}, for a new index that is a clone of ``live``: unchanged documents are not written
    at all, gone ones are deleted from the clone (``sink``: the clone's connection and name).

    ``reread``: the source's reader once more; its documents become (id, position, short hashes) under
    counters.UNCOUNTED. ``clone=False`` (a full build next to a live index): everything is encoded into
    an empty index and the same small join only counts the documents gone from the source."""

    def __init__(self, fields: dict[str, ModelInfo], model_hash: str, live: OpenSearchSourceConfig, source: Any,
                 reread: beam.PTransform, sink: Any, clone: bool = True, progress_every: float = 10.0):
        super().__init__()
        self.fields, self.model_hash, self.live, self.source = fields, model_hash, live, source
        self.reread, self.sink, self.clone, self.progress_every = reread, sink, clone, progress_every

    def expand(self, docs: beam.PCollection) -> dict[str, beam.PCollection]:
        from neural_ingest.transforms.prepare import PrepareFn
        from neural_ingest.transforms.read_opensearch import ReadFromOpenSearch

        p, model_hash = docs.pipeline, self.model_hash
        src = (p | counters.UNCOUNTED >> _SourceStamps(self.source, self.reread, PrepareFn))
        live = (
            p | "ReadLiveStamps" >> ReadFromOpenSearch(self.live, includes=[STAMP_FIELD], count_read=False)
        )["records"] | "LiveKey" >> beam.Map(_live_stamp(model_hash))
        joined = (
            (src, live) | "BothSides" >> beam.Flatten()
            | "JoinStamps" >> beam.CombinePerKey(JoinStampsFn())
            | "Classify" >> beam.FlatMap(classify)
        )
        if not self.clone:
            _ = joined | "CountGone" >> beam.Map(lambda kv: counters.inc(DELETED) if kv[1][0] is None else None)
            return {"documents": docs | "Stamp" >> beam.Map(stamp, model_hash)}
        todo = joined | "DeleteFromClone" >> beam.ParDo(DeleteFromCloneFn(self.sink))
        out = docs | "ChangesOnly" >> beam.ParDo(
            ChangesOnlyFn(self.fields, self.live, model_hash, self.progress_every), beam.pvalue.AsDict(todo)
        ).with_outputs(READY, main="documents")
        return {"documents": out.documents, READY: out[READY]}


class _SourceStamps(beam.PTransform):
    """PBegin -> (id, (SRC, position, content digest, doc digest)) from a second read: PrepareFn's own rules,
    so ids, skips and dead letters are the run's (its counters are left out: counters.UNCOUNTED)."""

    def __init__(self, source: Any, reread: beam.PTransform, prepare_fn: type):
        super().__init__()
        self.source, self.reread, self.prepare_fn = source, reread, prepare_fn

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        from neural_ingest.transforms.counters import DEAD_LETTER, SKIPPED

        records = (pbegin | "Read" >> self.reread)["records"]
        docs = records | "Prepare" >> beam.ParDo(self.prepare_fn(self.source)).with_outputs(DEAD_LETTER, SKIPPED, main="documents")
        return docs.documents | "IdAndDigests" >> beam.Map(lambda d: (d.id, (SRC, d.position, *_digests(d))))
