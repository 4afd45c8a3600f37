"""Client-side pruning of sparse maps, with the rules neural-search applies in its ingest processor.

neural-search (``PruneUtils``, prune_type / prune_ratio of the ``sparse_encoding`` processor) defines:

- ``top_k``: keep the ``k`` largest weights (``ratio`` is ``k``, a positive integer);
- ``max_ratio``: keep weights ``>= ratio * max(weights)``, ``ratio`` in [0, 1);
- ``alpha_mass``: walk the weights from largest to smallest, keep each while the running sum is
  ``<= ratio * sum(weights)``, ``ratio`` in [0, 1);
- ``abs_value``: keep weights ``>= ratio``, ``ratio >= 0``.

The arithmetic is done in float32, as the Java code does, so a map pruned here keeps exactly the
tokens an ingest pipeline with the same settings would keep. Ties at the ``top_k`` boundary (which
neural-search breaks in hash order) are broken by the map's own order here.
"""
from __future__ import annotations

import numpy as np

PRUNE_TYPES = ("none", "top_k", "max_ratio", "alpha_mass", "abs_value")


def ratio_problem(prune_type: str, ratio: float | None) -> str | None:
    """Why ``ratio`` is not valid for ``prune_type`` (neural-search's ranges), or None."""
    if prune_type not in PRUNE_TYPES:
        return f"unknown prune type {prune_type!r}; known: {', '.join(PRUNE_TYPES)}"
    if prune_type == "none":
        return None
    if ratio is None:
        return f"prune type {prune_type!r} needs a ratio"
    if prune_type == "top_k" and not (ratio > 0 and float(ratio).is_integer()):
        return f"top_k: ratio is the number of tokens kept, a positive integer (got {ratio})"
    if prune_type in ("max_ratio", "alpha_mass") and not 0 <= ratio < 1:
        return f"{prune_type}: ratio must be in [0, 1) (got {ratio})"
    if prune_type == "abs_value" and not ratio >= 0:
        return f"abs_value: ratio is a weight threshold, >= 0 (got {ratio})"
    return None


def prune(vec: dict[str, float], prune_type: str, ratio: float | None) -> dict[str, float]:
    """The part of ``vec`` (token -> positive weight) that ``prune_type``/``ratio`` keeps, in ``vec``'s order."""
    problem = ratio_problem(prune_type, ratio)
    if problem:
        raise ValueError(problem)
    if prune_type == "none" or not vec:
        return dict(vec)
    for tok, weight in vec.items():
        if not weight > 0:
            raise ValueError(f"pruning needs positive weights; token {tok!r} has {weight!r}")
    assert ratio is not None  # ratio_problem: every prune type but "none" needs one
    tokens = list(vec)
    w = np.asarray([vec[t] for t in tokens], dtype=np.float32)
    r = np.float32(ratio)
    if prune_type == "top_k":
        k = int(ratio)
        order = np.argsort(-w, kind="stable")[:k]
        keep = np.zeros(len(w), dtype=bool)
        keep[order] = True
    elif prune_type == "max_ratio":
        keep = w >= r * w.max()
    elif prune_type == "abs_value":
        keep = w >= r
    else:  # alpha_mass
        total = np.float32(np.sum(w, dtype=np.float64))
        limit = r * total
        order = np.argsort(-w, kind="stable")
        keep = np.zeros(len(w), dtype=bool)
        top = np.float32(0)
        for i in order:
            top = np.float32(top + w[i])
            if top <= limit:
                keep[i] = True
            else:
                break  # weights are positive: the running sum only grows
    return {t: vec[t] for t, k in zip(tokens, keep) if k}
