"""Hybrid (dense + sparse) score fusion, the way neural-search's normalization processor does it.

With neural-search on the cluster, ``OpenSearchSink.search_hybrid`` sends a ``hybrid`` query through
a search pipeline with a ``normalization-processor`` (min_max + arithmetic_mean). Everywhere else
(the Parquet sink, clusters without neural-search) :func:`fuse` reproduces that processor client-side:

- each sub-query's hits are min-max normalised: ``(s - min) / (max - min)``; a result equal to the
  minimum becomes 0.001, and a sub-query whose scores are all equal gives 1.0;
- a document a sub-query did not return scores 0.0 there (and still counts in the mean);
- combination is the weighted arithmetic mean ``sum(w_i * s_i) / sum(w_i)``.

Each sub-query contributes its own top ``k`` (the hybrid query's per-shard window on one shard).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from neural_ingest.hits import Hit

MIN_SCORE = np.float32(0.001)
SINGLE_RESULT_SCORE = np.float32(1.0)
DEFAULT_WEIGHTS = (0.5, 0.5)


def min_max(scores: Sequence[float]) -> list[float]:
    """neural-search's min_max normalisation of one sub-query's scores (float32 arithmetic)."""
    if not scores:
        return []
    s = np.asarray(scores, dtype=np.float32)
    lo, hi = s.min(), s.max()
    out = []
    for x in s:
        if hi == lo:
            out.append(float(SINGLE_RESULT_SCORE))
            continue
        n = np.float32((x - lo) / np.float32(hi - lo))
        out.append(float(MIN_SCORE if n == 0 else n))
    return out


def fuse(results: Sequence[Sequence[Hit]], weights: Sequence[float] | None = None, k: int = 10) -> list[Hit]:
    """Combine sub-query hit lists (best first) into one list of ``k`` hits, best first."""
    weights = list(weights or [1.0 / len(results)] * len(results))
    if len(weights) != len(results):
        raise ValueError(f"{len(weights)} weights for {len(results)} sub-queries")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"hybrid weights must be non-negative and not all zero, got {weights}")
    per_doc: dict[str, list[float]] = {}
    sources: dict[str, dict[str, Any]] = {}
    first_seen: dict[str, int] = {}
    for leg, hits in enumerate(results):
        for hit, norm in zip(hits, min_max([h.score for h in hits])):
            per_doc.setdefault(hit.id, [0.0] * len(results))[leg] = norm
            sources.setdefault(hit.id, hit.source)
            first_seen.setdefault(hit.id, len(first_seen))
    w = np.asarray(weights, dtype=np.float32)
    combined = {d: float(np.dot(w, np.asarray(s, dtype=np.float32)) / w.sum()) for d, s in per_doc.items()}
    order = sorted(combined, key=lambda d: (-combined[d], first_seen[d]))
    return [Hit(d, combined[d], sources[d]) for d in order[:k]]


def search_pipeline_body(weights: Sequence[float]) -> dict[str, Any]:
    """The neural-search search pipeline equivalent to :func:`fuse`."""
    return {
        "description": "neural-ingest hybrid: min_max + arithmetic_mean",
        "phase_results_processors": [
            {
                "normalization-processor": {
                    "normalization": {"technique": "min_max"},
                    "combination": {"technique": "arithmetic_mean", "parameters": {"weights": [float(x) for x in weights]}},
                }
            }
        ],
    }
