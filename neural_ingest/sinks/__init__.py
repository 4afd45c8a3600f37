"""Where documents go: an OpenSearch index, or the embedded local Parquet dataset."""
from __future__ import annotations

from neural_ingest.config import SinkConfig
from neural_ingest.sinks.base import REPLACE, UPSERT, ChunkLayout, Searcher, Sink


def make_sink(cfg: SinkConfig, mode: str = REPLACE, chunking: ChunkLayout | None = None) -> Sink:
    """``mode``: REPLACE for `run` (Parquet publishes the run's output as the dataset), UPSERT for
    `dlq replay` (documents are added to what the sink holds, same id replaced; nothing removed).
    ``chunking`` (a run's ChunkPlan, or the config's chunking block for `search`): with mode "chunk" the
    sink stores and searches one vector per chunk. An unknown ``mode`` is a ValueError."""
    if cfg.type == "opensearch":
        from neural_ingest.sinks.opensearch import OpenSearchSink

        return OpenSearchSink(cfg, mode, chunking)
    from neural_ingest.sinks.parquet import ParquetSink

    return ParquetSink(cfg, mode, chunking)


__all__ = ["REPLACE", "UPSERT", "ChunkLayout", "Searcher", "Sink", "make_sink"]
