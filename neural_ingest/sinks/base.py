"""The sink interface the pipeline and `neural-ingest search` use."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam

from neural_ingest.encoders.base import ModelInfo
from neural_ingest.errors import NeuralIngestError


class SinkError(NeuralIngestError, RuntimeError):
    """A sink problem found before or after the pipeline, phrased with its fix."""


# How a run's documents meet what the sink already holds:
# - "replace": `run` publishes its output as the whole dataset where the sink is one (Parquet: the
#   dataset is swapped atomically); an index just receives the documents.
# - "upsert": `dlq replay` adds its documents to what is there, a document whose id is already there
#   replacing it, and never removes anything else.
REPLACE, UPSERT = "replace", "upsert"
WRITE_MODES = (REPLACE, UPSERT)


@dataclass
class Hit:
    id: str
    score: float
    source: dict[str, Any] = field(default_factory=dict)
    # Chunked indexes: the document's best chunk {"text", "start", "end", "index", "score"}.
    passage: dict[str, Any] | None = None


class Sink(ABC):
    # neural_ingest.chunking.ChunkPlan when documents are chunked (set by pipelines.ingest.prepare):
    # the mapping / schema and the writer then hold one vector per chunk.
    chunking: Any = None
    mode: str = REPLACE  # REPLACE or UPSERT, set by make_sink

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
    def write(self, run_id: str, fields: dict[str, ModelInfo], progress_every: float) -> beam.PTransform:
        """PTransform: Documents -> {"dead_letter": DeadLetters}; counts ``indexed``."""

    def finalize(self, run_id: str, success: bool) -> None:
        """Publish what the run wrote (or clean up after a failure), as ``mode`` says."""

    def measure_recall(self, encoders: list, fields: dict[str, ModelInfo]) -> dict[str, Any] | None:
        """recall@k of the built index for the summary (OpenSearch); None: not measured here."""
        return None

    def count(self) -> int | None:
        """How many documents the sink holds now (None: unknown or unreachable); for the summary."""
        return None

    @abstractmethod
    def search(self, field: str, info: ModelInfo, vector: Any, k: int) -> list[Hit]:
        """The k best documents for a query vector, best first."""

    def search_sparse(self, field: str, info: ModelInfo, query: dict[str, float], k: int) -> list[Hit]:
        """The k best documents for a sparse query ({token: weight}), scored by dot product, best first."""
        raise SinkError(f"{self.describe()} does not support sparse search")

    def search_hybrid(
        self,
        dense: tuple[str, ModelInfo, Any],
        sparse: tuple[str, ModelInfo, dict[str, float]],
        k: int,
        weights: tuple[float, float] | None = None,
    ) -> list[Hit]:
        """Dense and sparse results combined (min-max + weighted arithmetic mean, as neural-search does).

        ``dense``/``sparse`` are (field, model info, query vector). This default fuses client-side.
        """
        from neural_ingest.hybrid import DEFAULT_WEIGHTS, fuse

        dense_hits = self.search(dense[0], dense[1], dense[2], k)
        sparse_hits = self.search_sparse(sparse[0], sparse[1], sparse[2], k)
        return fuse([dense_hits, sparse_hits], weights or DEFAULT_WEIGHTS, k)
