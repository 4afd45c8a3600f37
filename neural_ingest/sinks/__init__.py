"""Where documents go: an OpenSearch index, or the embedded local Parquet dataset."""
from __future__ import annotations

from neural_ingest.sinks.base import REPLACE, UPSERT, WRITE_MODES, Sink


def make_sink(cfg, mode: str = REPLACE) -> Sink:
    """``mode``: REPLACE for `run` (Parquet publishes the run's output as the dataset), UPSERT for
    `dlq replay` (documents are added to what the sink holds, same id replaced; nothing removed)."""
    if mode not in WRITE_MODES:
        raise ValueError(f"sink write mode {mode!r}: expected one of {WRITE_MODES}")
    sink: Sink
    if cfg.type == "opensearch":
        from neural_ingest.sinks.opensearch import OpenSearchSink

        sink = OpenSearchSink(cfg)
    else:
        from neural_ingest.sinks.parquet import ParquetSink

        sink = ParquetSink(cfg)
    sink.mode = mode
    return sink


__all__ = ["REPLACE", "UPSERT", "Sink", "make_sink"]
