"""Where documents go: an OpenSearch index, or the embedded local Parquet dataset."""
from __future__ import annotations

from neural_ingest.sinks.base import Sink


def make_sink(cfg) -> Sink:
    if cfg.type == "opensearch":
        from neural_ingest.sinks.opensearch import OpenSearchSink

        return OpenSearchSink(cfg)
    from neural_ingest.sinks.parquet import ParquetSink

    return ParquetSink(cfg)


__all__ = ["Sink", "make_sink"]
