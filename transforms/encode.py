"""Batched encoding DoFn: one shared model per worker process, failures isolated per document."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, cast

import apache_beam as beam
import numpy as np
import numpy.typing as npt

from neural_ingest.encoders.base import Encoder, Loaded, vector_problem
from neural_ingest.encoders.sparse_weights import drop_absent
from neural_ingest.model_info import ModelInfo, Vector
from neural_ingest.records import ENCODE, Document
from neural_ingest.transforms import counters
from neural_ingest.transforms.chunks import Chunk
from neural_ingest.transforms.counters import DEAD_LETTER, DeadLetterOutput
from neural_ingest.transforms.isolate import Failure, isolated

log = logging.getLogger(__name__)


def dense_batch_valid(vectors: Sequence[Vector] | npt.NDArray[Any], info: ModelInfo) -> bool:
    """True when every vector of a dense batch is a finite 1-D numpy array of the model's size: what
    ``vector_problem`` checks one by one, in one numpy call. False sends the batch to the per-vector checks."""
    if info.kind != "dense" or len(vectors) == 0 or info.dimension is None:
        return False
    dim = info.dimension
    if type(vectors) is np.ndarray:  # one (n, dim) array (the hash encoder's, sentence-transformers'): no stacking
        return vectors.ndim == 2 and vectors.shape[1] == dim and bool(np.isfinite(vectors).all())
    if not all(type(v) is np.ndarray and v.shape == (dim,) for v in vectors):
        return False
    return bool(np.isfinite(np.stack(cast("Sequence[npt.NDArray[Any]]", vectors))).all())  # arrays: checked just above


def with_embedding(doc: Document, field: str, vec: Vector) -> Document:
    """A copy of ``doc`` with ``vec`` under ``field`` (inputs are not ours to change); a shallow copy
    without ``dataclasses.replace``'s call of ``__init__``, which costs more per document than the hash encoder."""
    new = Document.__new__(Document)
    new.__dict__.update(doc.__dict__)
    new.embeddings = {**doc.embeddings, field: vec}
    return new


class EncodeBatchFn(beam.DoFn):
    """Encode a batch of Documents into ``doc.embeddings[field]``.

    The model is acquired in ``setup()`` through ``apache_beam.utils.shared``, so every DoFn thread
    in a worker process uses one copy. If a whole batch fails, it is retried one document at a time
    so that only the documents that really fail become dead letters.
    """

    def __init__(self, encoder: Encoder[Any], field: str, progress_every: float = 10.0, lists: bool = False):
        self.encoder = encoder
        self.field = field
        self.progress_every = progress_every
        self.lists = lists  # the encoded documents of a batch leave as one list (dead letters one a document)
        self._loaded: Loaded[Any] | None = None

    def setup(self) -> None:
        self._loaded = self.encoder.acquire()

    def _model(self) -> Loaded[Any]:
        """The shared model, from ``setup()`` (Beam calls it before the first bundle). A method, not a property:
        Beam reads every attribute of a DoFn when it builds the pipeline, before setup()."""
        if self._loaded is None:
            raise RuntimeError(f"{type(self).__name__} used before setup(): no model is loaded")
        return self._loaded

    def _dead(
        self, doc: Document, reason: str, message: str, status: int | None = None, attempts: int = 1
    ) -> DeadLetterOutput:
        return counters.dead_letter(ENCODE, reason, message, doc, doc_id=doc.id, status=status, attempts=attempts)

    def process(self, batch: Any) -> Iterable[Any]:
        if not self.lists:
            yield from self._outputs(batch)
            return
        docs: list[Any] = []
        for out in self._outputs(batch):
            if isinstance(out, beam.pvalue.TaggedOutput):
                yield out
            else:
                docs.append(out)
        if docs:
            yield docs

    def _encode(self, batch: Sequence[Document]) -> list[Vector]:
        """The batch's vectors, in order (EncodeWindowFn encodes from the tokens its sort already took)."""
        return self.encoder.encode(self._model(), [d.text for d in batch])

    def _checked(self, batch: Sequence[Document]) -> list[Vector]:
        vectors = self._encode(batch)
        if len(vectors) != len(batch):
            raise ValueError(f"encoder returned {len(vectors)} vectors for {len(batch)} texts")
        return vectors

    def _outputs(self, batch: Sequence[Document]) -> Iterable[Any]:
        if batch and batch[0].chunks is not None:  # chunking on: one vector per chunk (transforms/chunk.py)
            from neural_ingest.transforms.chunk import encode_chunked

            yield from encode_chunked(self, batch)
            return
        for item in isolated(batch, self._checked):
            if isinstance(item, Failure):
                yield self._dead(item.item, *item.dead_letter())
            else:
                yield from self._embedded(*item)

    def _embedded(self, batch: Sequence[Document], vectors: list[Vector]) -> Iterable[Any]:
        """The batch's documents with their vectors, each vector checked (a bad one: that document's dead letter)."""
        ok = 0
        info = self._model().info
        valid = dense_batch_valid(vectors, info)  # one check for the whole batch; else each vector's own
        for doc, raw_vec in zip(batch, vectors):
            vec = raw_vec
            if not valid:
                if info.kind == "sparse" and isinstance(vec, dict):
                    vec = drop_absent(vec)  # zero / subnormal weights mean "absent"; rank_features rejects them
                problem = vector_problem(vec, info)
                if problem:
                    yield self._dead(doc, "invalid_vector", problem)
                    continue
            ok += 1
            yield with_embedding(doc, self.field, vec)
        counters.inc(f"encoded.{self.field}", ok)
        counters.Progress.add(f"encoded[{self.field}]", ok, self.progress_every)


class EncodeDocuments(beam.PTransform[beam.PCollection[Any], dict[str, beam.PCollection[Any]]]):
    """Documents -> {"documents": encoded Documents, "dead_letter": DeadLetters}. ``chunked``: the input may
    hold lists of Documents; ``lists``: the encoded ones leave as lists (a batch or window each)."""

    def __init__(self, encoder: Encoder[Any], field: str, progress_every: float = 10.0, truncation_limit: int | None = None,
                 chunked: bool = False, lists: bool = False):
        super().__init__()
        self.encoder = encoder
        self.field = field
        self.progress_every = progress_every
        self.truncation_limit = truncation_limit  # count the documents over it (truncate mode; batching.counts_tokens)
        self.chunked = chunked
        self.lists = lists

    def expand(self, docs: beam.PCollection[Any]) -> dict[str, beam.PCollection[Any]]:
        from neural_ingest.transforms.batching import batching_for

        # Windows encoded in length-sorted batches (encoder config `batching`, the default), or fixed-size
        # batches in arrival order; either way documents leave in arrival order (transforms/batching.py).
        batch, encode_fn = batching_for(
            self.encoder, self.field, self.progress_every, self.truncation_limit, self.chunked, self.lists
        )
        out = (
            docs
            | "Batch" >> batch
            | "Encode" >> (beam.ParDo(encode_fn).with_output_types(Chunk) if self.lists else beam.ParDo(encode_fn)).with_outputs(
                DEAD_LETTER, main="documents"
            )
        )
        return {"documents": out.documents, DEAD_LETTER: out[DEAD_LETTER]}


class EncodeAll(beam.PTransform[beam.PCollection[Any], dict[str, beam.PCollection[Any]]]):
    """Documents -> {"documents": Documents carrying every encoder's vector, "dead_letter": DeadLetters}: the
    encoders in turn, a document failing one of them leaving the others (the CLI's ingest and the public
    :class:`neural_ingest.beam.EmbedAndIndex` both encode through this)."""

    def __init__(self, encoders: Sequence[tuple[str, Encoder[Any]]], progress_every: float = 10.0,
                 truncation_limits: dict[str, int] | None = None, chunked: bool = False, lists: bool = False):
        super().__init__()
        self.encoders = list(encoders)
        self.progress_every = progress_every
        self.truncation_limits = truncation_limits or {}
        self.chunked = chunked  # the documents come as lists (chunks), not one an element
        self.lists = lists  # the encoded documents leave as lists (the next encoder then takes lists)

    def expand(self, docs: beam.PCollection[Any]) -> dict[str, beam.PCollection[Any]]:
        dead = []
        chunked = self.chunked
        for field, encoder in self.encoders:
            enc = docs | f"Encode[{field}]" >> EncodeDocuments(
                encoder, field, self.progress_every, self.truncation_limits.get(field), chunked=chunked, lists=self.lists
            )
            docs, chunked = enc["documents"], self.lists
            dead.append(enc[DEAD_LETTER])
        failed = tuple(dead) | "DeadLetters" >> beam.Flatten(pipeline=docs.pipeline)
        return {"documents": docs, DEAD_LETTER: failed}
