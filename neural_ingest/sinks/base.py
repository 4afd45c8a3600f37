"""The sink interface the pipeline and `neural-ingest search` use."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol

import apache_beam as beam

from neural_ingest.errors import NeuralIngestError
from neural_ingest.hits import Hit
from neural_ingest.hybrid import DEFAULT_WEIGHTS, fuse
from neural_ingest.model_info import DenseVector, ModelInfo, SparseVector

__all__ = [
    "REPLACE",
    "UPSERT",
    "WRITE_MODES",
    "ChunkLayout",
    "DenseQuery",
    "Hit",
    "Searcher",
    "Sink",
    "SinkError",
    "SparseQuery",
]


class SinkError(NeuralIngestError, RuntimeError):
    """A sink problem found before or after the pipeline, phrased with its fix."""


# How a run's documents meet what the sink already holds:
# - "replace": `run` publishes its output as the whole dataset where the sink is one (Parquet: the
#   dataset is swapped atomically); an index just receives the documents.
# - "upsert": `dlq replay` adds its documents to what is there, a document whose id is already there
#   replacing it, and never removes anything else.
REPLACE, UPSERT = "replace", "upsert"
WRITE_MODES = (REPLACE, UPSERT)


# (field, model info, query vector) of each leg of a hybrid search.
DenseQuery = tuple[str, ModelInfo, DenseVector]
SparseQuery = tuple[str, ModelInfo, SparseVector]


class ChunkLayout(Protocol):
    """How a sink stores chunks. A run's ``chunking.ChunkPlan`` and the config's ``ChunkingConfig`` (all that
    `search` has, before any model loads) both are one, so sinks need neither."""

    @property
    def mode(self) -> str: ...  # "chunk": one vector per chunk; "truncate": documents as they are

    @property
    def storage(self) -> str: ...  # OpenSearch: "nested" (in the document) or "separate" (a document per chunk)

    @property
    def field(self) -> str: ...  # the chunk field (nested) / column (Parquet)


class Searcher(Protocol):
    """What `neural-ingest search` queries: a sink, or document-level search over a sink's chunks."""

    def describe(self) -> str: ...

    def search(self, field: str, info: ModelInfo, vector: DenseVector, k: int) -> list[Hit]: ...

    def search_sparse(self, field: str, info: ModelInfo, query: SparseVector, k: int) -> list[Hit]: ...

    def search_hybrid(
        self, dense: DenseQuery, sparse: SparseQuery, k: int, weights: tuple[float, float] | None = None
    ) -> list[Hit]: ...


class Sink(ABC):
    def __init__(self, mode: str = REPLACE, chunking: ChunkLayout | None = None):
        """``mode``: REPLACE or UPSERT. ``chunking``: chunks are stored (one vector per chunk in the mapping /
        schema and the writer) when its mode is "chunk"; a truncate plan only counts truncation."""
        if mode not in WRITE_MODES:
            raise ValueError(f"sink write mode {mode!r}: expected one of {WRITE_MODES}")
        self.mode = mode
        self.chunking = chunking if chunking is not None and chunking.mode == "chunk" else None

    @abstractmethod
    def describe(self) -> str:
        """Where the output goes, for the summary."""

    @property
    def index_name(self) -> str | None:
        return None

    @abstractmethod
    def check(self, fields: dict[str, ModelInfo]) -> list[str]:
        """Pre-flight problems (cluster unreachable, mapping conflict), without changing anything."""

    @abstractmethod
    def prepare(self, fields: dict[str, ModelInfo], run_id: str) -> None:
        """Get ready to receive documents (create the index, a staging directory)."""

    @abstractmethod
    def write(self, run_id: str, fields: dict[str, ModelInfo], progress_every: float) -> beam.PTransform[Any, Any]:
        """PTransform: Documents -> {"dead_letter": DeadLetters}; counts ``indexed``."""

    def finalize(self, run_id: str, success: bool) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Publish what the run wrote (or clean up after a failure), as ``mode`` says."""

    def measure_recall(self, encoders: list[tuple[str, Any]], fields: dict[str, ModelInfo]) -> dict[str, Any] | None:
        """recall@k of the built index for the summary (OpenSearch); None: not measured here."""
        return None

    def count(self) -> int | None:
        """How many documents the sink holds now (None: unknown or unreachable); for the summary."""
        return None

    def searcher(self, fields: Sequence[str]) -> Searcher:
        """What `search` queries: this sink, or (chunked) its documents scored by their best chunk, which comes
        back as Hit.passage. ``fields``: every encoder field (left out of returned sources)."""
        if self.chunking is None:
            return self
        return self.chunk_searcher(self.chunking, list(fields))

    @abstractmethod
    def chunk_searcher(self, chunking: ChunkLayout, fields: list[str]) -> Searcher:
        """Document-level search over the chunks this sink stores as ``chunking`` says."""

    def searchable_count(self) -> int | None:
        """``count()``, after checking that what `search` reads is there: a missing index, alias or dataset
        raises one SinkError naming it and the fix (before any model loads)."""
        return self.count()

    @abstractmethod
    def search(self, field: str, info: ModelInfo, vector: DenseVector, k: int) -> list[Hit]:
        """The k best documents for a query vector, best first."""

    def search_sparse(self, field: str, info: ModelInfo, query: SparseVector, k: int) -> list[Hit]:
        """The k best documents for a sparse query ({token: weight}), scored by dot product, best first."""
        raise SinkError(f"{self.describe()} does not support sparse search")

    def search_hybrid(
        self, dense: DenseQuery, sparse: SparseQuery, k: int, weights: tuple[float, float] | None = None
    ) -> list[Hit]:
        """Dense and sparse results combined (min-max + weighted arithmetic mean, as neural-search does).

        ``dense``/``sparse`` are (field, model info, query vector). This default fuses client-side.
        """
        dense_hits = self.search(dense[0], dense[1], dense[2], k)
        sparse_hits = self.search_sparse(sparse[0], sparse[1], sparse[2], k)
        return fuse([dense_hits, sparse_hits], weights or DEFAULT_WEIGHTS, k)
