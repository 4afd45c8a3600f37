"""neural-ingest: batch embedding ETL for OpenSearch semantic search, on Apache Beam.

The stable Python API is :mod:`neural_ingest.beam` (its ``__all__``, re-exported here); every other module is
internal. The names are imported on first use, so ``import neural_ingest`` (the CLI's start) stays light.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["DenseModelHandler", "EmbedAndIndex", "NeuralSparseModelHandler", "WriteResult", "WriteToOpenSearch", "__version__"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from neural_ingest import beam

        return getattr(beam, name)
    raise AttributeError(f"module 'neural_ingest' has no attribute {name!r}")
