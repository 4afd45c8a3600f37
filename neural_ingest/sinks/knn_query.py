"""The approximate k-NN query clause, for document search (opensearch.py) and chunk search (opensearch_chunks.py)."""
from __future__ import annotations

from typing import Any

from neural_ingest.config import KnnConfig
from neural_ingest.model_info import DenseVector


def knn_clause(knn: KnnConfig, field: str, vector: DenseVector, k: int) -> dict[str, Any]:
    """An approximate k-NN clause whose search window (knn.search_candidates) is wider than the k kept."""
    return {"knn": {field: {"vector": [float(x) for x in vector], "k": knn.window(k)}}}
