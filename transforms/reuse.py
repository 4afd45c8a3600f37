"""Incremental re-embedding for ``reindex``: the stamps every written document carries, and reuse of the live index's
vectors for index sources.

Every document is stamped with ``neural_ingest: {content_sha256, doc_sha256, model}`` (the hash of the
text that is embedded, of text + metadata, and the model identity hash).

Index sources (``ReuseStoredVectors``): the live index is read (point in time, slices) and
joined with the source by id (CoGroupByKey):

- same text hash and model identity, every encoder field present and valid: the stored vectors are
  reused (counter ``reused``) and the document skips encoding;
- new, changed, or stored by another model: encoded as usual;
- in the live index but no longer in the source: not carried into the new index (counter ``deleted``).

Metadata always comes from the source, so metadata-only changes land without re-encoding. File sources take
the clone path (transforms/clone_night.py).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
import numpy as np

from neural_ingest.config import OpenSearchSourceConfig
from neural_ingest.encoders.base import ModelInfo, vector_problem
from neural_ingest.fingerprint import content_hash
from neural_ingest.model_info import Vector
from neural_ingest.records import Document
from neural_ingest.transforms import counters
from neural_ingest.transforms.manifest import ManifestOut, ManifestRows, Row, block, partition, short

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
            manifest_rows(stamped, self.manifest_out)
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


class StampRowsFn(beam.DoFn):
    """Stamped Documents of a full build -> (partition, (ids, digests)) blocks of (id, raw, doc, content); the raw digest from the
    position ParseJsonLine gave (0 when it has none)."""

    _BATCH = 2000

    def __init__(self) -> None:
        beam.DoFn.__init__(self)  # Beam's own (unannotated) __init__, named: mypy takes super()'s for ours

    def start_bundle(self) -> None:
        self._parts: dict[int, list[Row]] = {}

    def process(self, doc: Any) -> Iterable[Any]:
        mark = doc.metadata[STAMP_FIELD]
        pos = doc.position
        raw = pos[2] if pos is not None and len(pos) > 2 else 0
        part = partition(doc.id)
        batch = self._parts.setdefault(part, [])
        batch.append((doc.id, raw, short(mark["doc_sha256"]), short(mark["content_sha256"])))
        if len(batch) >= self._BATCH:
            yield part, block(self._parts.pop(part))

    def finish_bundle(self) -> Iterable[Any]:
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.windowed_value import WindowedValue

        for part, batch in self._parts.items():
            yield WindowedValue((part, block(batch)), 0, (GlobalWindow(),))
        self._parts = {}


def manifest_rows(stamped: beam.PCollection[Any], out: ManifestOut | None) -> None:
    """A full build's manifest rows, from the stamped documents (their raw-line digests from the reader)."""
    if out is not None:
        _ = stamped | "ManifestRows" >> beam.ParDo(StampRowsFn()) | "Manifest" >> ManifestRows(out)
