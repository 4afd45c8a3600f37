"""Long documents: split each Document into chunks (or count what truncation loses), and encode chunks.

``ChunkDocuments`` runs between prepare and encode. With ``chunking.mode: chunk`` it sets
``doc.chunks`` (neural_ingest.chunking); every encoder then embeds the chunk texts
(:func:`encode_chunked`, called by EncodeBatchFn) and ``doc.embeddings[field]`` becomes one vector per
chunk. In both modes it counts, per local encoder, the documents it would truncate:
``truncated.<field>`` (a document, or at least one of its chunks, longer than the model's
max_seq_length) and ``truncated`` (documents truncated by at least one encoder); ``chunks`` counts the
chunks made.

Why encode in the same DoFn instead of a flatten / GroupByKey: the chunks of one document must come
back together (a document is indexed whole or dead-lettered whole), and a shuffle of every vector
would cost more than the encoding it regroups. The encode batching (transforms/batching.py) weighs
each document by its chunk count, and encode calls take ``batch_size`` texts, across documents.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam

from neural_ingest.chunking import ChunkPlan, ChunkTokenizer
from neural_ingest.encoders.base import Encoder, vector_problem
from neural_ingest.encoders.sparse_weights import drop_absent
from neural_ingest.records import PREPARE, Document
from neural_ingest.transforms import counters
from neural_ingest.transforms.counters import DEAD_LETTER
from neural_ingest.transforms.isolate import Failure, isolated

log = logging.getLogger(__name__)


def _required(model: str | None) -> str:
    """The plan's tokenizer model: plan_chunking sets it whenever it sets no tokenizer field."""
    if model is None:
        raise ValueError("chunk plan: fixed_token_length with neither a tokenizer field nor a tokenizer model")
    return model


class ChunkFn(beam.DoFn):
    def __init__(self, plan: ChunkPlan, encoders: Sequence[tuple[str, Encoder[Any]]]):
        self.plan = plan
        self.encoders = [(f, e) for f, e in encoders if f in plan.max_lengths or f == plan.tokenizer_field]
        self._counters: list[tuple[str, ChunkTokenizer, int]] = []
        self._tok: ChunkTokenizer | None = None
        self._models: list[Any] = []  # held: the shared model must not be dropped and reloaded by EncodeBatchFn

    def setup(self) -> None:
        # The encoders' own shared models (already loaded in this process); a private tokenizer copy each.
        toks: dict[str, ChunkTokenizer] = {}
        for field, enc in self.encoders:
            loaded = enc.acquire()
            self._models.append(loaded)
            toks[field] = ChunkTokenizer.from_loaded(loaded, field)
            if field in self.plan.max_lengths:
                self._counters.append((field, toks[field], self.plan.max_lengths[field]))
        p = self.plan
        if p.chunking and p.algorithm == "fixed_token_length":
            self._tok = (
                toks[p.tokenizer_field]
                if p.tokenizer_field
                else ChunkTokenizer.from_model(_required(p.tokenizer_model), p.models_dir)
            )

    def process(self, doc: Document) -> Iterable[Any]:
        units = [doc.text]
        if self.plan.chunking:
            try:
                chunks = self.plan.chunk(doc.text, self._tok)
            except Exception as e:  # noqa: BLE001 - a tokenizer error must be a dead letter, not a crash
                yield counters.dead_letter(PREPARE, "chunking_failed", str(e)[:2000], doc.source, doc_id=doc.id)
                return
            counters.inc("chunks", len(chunks))
            units = [c["text"] for c in chunks]
            doc = dataclasses.replace(doc, chunks=chunks)
        truncated = False
        for field, tok, max_len in self._counters:
            if any(n > max_len for n in tok.count(units, special=True)):
                counters.inc(f"truncated.{field}")
                truncated = True
        if truncated:
            counters.inc("truncated")
        yield doc


class ChunkDocuments(beam.PTransform[Any, Any]):
    """Documents -> {"documents": Documents (with chunks in chunk mode), "dead_letter": DeadLetters}."""

    def __init__(self, plan: ChunkPlan, encoders: Sequence[tuple[str, Encoder[Any]]]):
        super().__init__()
        self.plan = plan
        self.encoders = list(encoders)

    def expand(self, docs: beam.PCollection[Any]) -> dict[str, beam.PCollection[Any]]:
        out = docs | "Chunk" >> beam.ParDo(ChunkFn(self.plan, self.encoders)).with_outputs(DEAD_LETTER, main="documents")
        return {"documents": out.documents, DEAD_LETTER: out[DEAD_LETTER]}


def encode_chunked(fn: Any, batch: Sequence[Document]) -> Iterable[Any]:
    """EncodeBatchFn's path for chunked documents: every chunk of the batch's documents is encoded, in
    encode calls of ``batch_size`` texts, and the vectors go back to their documents in chunk order.
    A failing call is retried document by document; a document with any bad chunk vector is a dead
    letter as a whole (it is never indexed with chunks missing)."""
    size = max(1, fn.encoder.batch_size())

    def encode_chunks(docs: Sequence[Document]) -> list[Any]:
        texts = [c["text"] for d in docs for c in d.chunks or ()]
        vectors: list[Any] = []
        for i in range(0, len(texts), size):
            part = texts[i : i + size]
            out = fn.encoder.encode(fn._loaded, part)
            if len(out) != len(part):
                raise ValueError(f"encoder returned {len(out)} vectors for {len(part)} texts")
            vectors.extend(out)
        return vectors

    for item in isolated(batch, encode_chunks, what="batch of chunked documents"):
        if isinstance(item, Failure):
            yield fn._dead(item.item, *item.dead_letter())
        else:
            yield from _chunk_vectors(fn, *item)


def _chunk_vectors(fn: Any, batch: Sequence[Document], vectors: list[Any]) -> Iterable[Any]:
    """The documents with one vector per chunk, in chunk order; a document with any bad chunk vector is a dead letter."""
    info = fn._loaded.info
    ok = n_chunks = pos = 0
    for doc in batch:
        n = len(doc.chunks or ())
        vecs = vectors[pos : pos + n]
        pos += n
        clean, problem = [], None
        for i, raw in enumerate(vecs):
            vec = drop_absent(raw) if info.kind == "sparse" and isinstance(raw, dict) else raw
            problem = vector_problem(vec, info)
            if problem:
                problem = f"chunk {i}: {problem}"
                break
            clean.append(vec)
        if problem:
            yield fn._dead(doc, "invalid_vector", problem)
            continue
        ok += 1
        n_chunks += len(clean)
        yield dataclasses.replace(doc, embeddings={**doc.embeddings, fn.field: clean})
    counters.inc(f"encoded.{fn.field}", ok)
    counters.inc(f"encoded_chunks.{fn.field}", n_chunks)
    counters.Progress.add(f"encoded[{fn.field}]", ok, fn.progress_every)
