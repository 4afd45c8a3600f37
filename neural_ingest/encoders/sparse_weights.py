"""What a sparse weight may be in OpenSearch, and how OpenSearch scores sparse maps.

``rank_features`` (Lucene ``FeatureField``) accepts only positive *normal* float32 values: zero,
negative, subnormal (< 1.18e-38), NaN and infinite weights make the whole document fail. It keeps
the top 17 bits of the float32 (``floatToIntBits(w) >>> 15``): about 0.4 % precision, truncated
towards zero. Queries (``neural_sparse`` and ``FeatureField.newLinearQuery``) take weights in
(0, 64].

Policy in this project:
- a zero or subnormal weight means "token absent": it is dropped (:func:`drop_absent`);
- a negative, NaN, infinite or float32-overflowing weight means the model or its activation is
  broken: the document goes to the dead-letter output with the reason (:func:`weight_problem`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # smallest positive normal float32, 1.17549435e-38
FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_QUERY_WEIGHT = 64.0  # FeatureField.MAX_WEIGHT: neural_sparse query_tokens must be in (0, 64]


def drop_absent(vec: Mapping[str, float]) -> dict[str, float]:
    """``vec`` without weights that mean "absent": exactly zero, or positive but below float32's normal range."""
    return {t: w for t, w in vec.items() if not (isinstance(w, (int, float)) and 0 <= w < FLOAT32_TINY)}


def weight_problem(token: str, w: object) -> str | None:
    """Why OpenSearch would reject ``w`` as a rank_features value, or None."""
    if isinstance(w, bool) or not isinstance(w, (int, float, np.floating)):
        return f"weight {w!r} for token {token!r} is not a number"
    w = float(w)
    if not math.isfinite(w):
        return f"weight {w!r} for token {token!r} is not finite"
    if w <= 0:
        return f"weight {w!r} for token {token!r} is not positive"
    if w < FLOAT32_TINY:
        return f"weight {w!r} for token {token!r} is below float32's normal range (rank_features rejects it)"
    if w > FLOAT32_MAX:
        return f"weight {w!r} for token {token!r} overflows float32"
    return None


def lucene_quantize(weights: np.ndarray | float) -> np.ndarray:
    """The value rank_features stores for each weight: float32 with the low 15 bits cleared."""
    a = np.ascontiguousarray(np.asarray(weights, dtype=np.float32))
    bits = a.view(np.uint32) >> np.uint32(15) << np.uint32(15)
    return bits.view(np.float32)


def sparse_dot(query: Mapping[str, float], doc: Mapping[str, float], *, quantize_doc: bool = True) -> float:
    """The score OpenSearch gives ``doc`` for a linear sparse query: sum of query weight x stored weight."""
    common = [t for t in query if t in doc]
    if not common:
        return 0.0
    d = np.asarray([doc[t] for t in common], dtype=np.float32)
    if quantize_doc:
        d = lucene_quantize(d)
    q = np.asarray([query[t] for t in common], dtype=np.float64)
    return float(np.dot(q, d.astype(np.float64)))
