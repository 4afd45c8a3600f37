"""Exact scoring for the Parquet sink's searches (documents and chunks), scored the way OpenSearch scores
the same space type / rank_features field, and hybrid fusion that keeps each document's best passage."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from neural_ingest.encoders.sparse_weights import lucene_quantize
from neural_ingest.hits import Hit
from neural_ingest.hybrid import DEFAULT_WEIGHTS, fuse, min_max
from neural_ingest.model_info import SparseVector


def dense_scores(matrix: np.ndarray, q: np.ndarray, space: str | None) -> np.ndarray:
    """k-NN scores of one query against each row of ``matrix``, as OpenSearch's k-NN plugin scores ``space``
    (None: cosinesimil)."""
    space = space or "cosinesimil"
    scores: np.ndarray
    if space == "cosinesimil":
        norms = np.linalg.norm(matrix, axis=1) * max(np.linalg.norm(q), 1e-12)
        scores = (1 + (matrix @ q) / np.maximum(norms, 1e-12)) / 2
    elif space == "innerproduct":
        dot = matrix @ q
        with np.errstate(divide="ignore"):  # np.where computes 1 / (1 - dot) for dot == 1 too, then drops it
            scores = np.where(dot >= 0, dot + 1, 1 / (1 - dot))
    else:
        scores = 1 / (1 + np.sum((matrix - q) ** 2, axis=1))
    return scores


def sparse_scores(col: pa.MapArray, query: SparseVector) -> np.ndarray:
    """Dot product of the query with each stored map (0.0 where no token is shared), the stored weights truncated
    to the precision rank_features keeps, so scores agree with OpenSearch's."""
    tokens = [t for t, w in query.items() if w > 0]
    n = len(col)
    offsets = col.offsets.to_numpy()
    start, end = int(offsets[0]), int(offsets[-1])
    keys = col.keys.slice(start, end - start)
    vals = lucene_quantize(col.items.slice(start, end - start).to_numpy(zero_copy_only=False))
    pos = pc.index_in(keys, value_set=pa.array(tokens, pa.string())).to_numpy(zero_copy_only=False)
    qw = np.asarray([float(query[t]) for t in tokens] + [0.0], dtype=np.float64)
    pos = np.where(np.isnan(pos.astype(np.float64)), len(tokens), pos).astype(np.int64)
    rows = np.repeat(np.arange(n), np.diff(offsets))
    return np.bincount(rows, weights=qw[pos] * vals.astype(np.float64), minlength=n)


def fuse_with_passages(legs: list[list[Hit]], weights: Sequence[float] | None, k: int) -> list[Hit]:
    """hybrid.fuse, plus each document's passage from the leg that weighs most in its score."""
    w = list(weights or DEFAULT_WEIGHTS)
    fused = fuse(legs, w, k)
    best: dict[str, tuple[float, dict[str, Any] | None]] = {}
    for leg, hits in enumerate(legs):
        for hit, norm in zip(hits, min_max([h.score for h in hits])):
            contrib = w[leg] * norm
            if hit.id not in best or contrib > best[hit.id][0]:
                best[hit.id] = (contrib, hit.passage)
    for h in fused:
        h.passage = best.get(h.id, (0.0, None))[1]
    return fused
