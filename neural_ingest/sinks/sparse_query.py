"""OpenSearch query bodies for a sparse (token -> weight) query against a rank_features field.

- ``neural_sparse`` with ``query_tokens`` (neural-search plugin): one linear FeatureField clause per
  token, tokens passed as they are (dots included). Lucene accepts query weights in (0, 64] only: a
  query with a larger weight is scaled into range and the query's ``boost`` undoes the scaling, so
  the score is still the plain dot product.
- Without neural-search, the equivalent ``bool.should`` of ``rank_feature`` queries with the
  ``linear`` function (the default, ``saturation``, is not a dot product) and the weight as boost.
  ``rank_feature`` finds the feature by splitting ``field.token`` at the last dot, so a token that
  contains "." would silently match nothing: those tokens are scored client-side instead, on a
  window of candidates fetched with their stored maps (see :func:`add_dotted_scores`).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from neural_ingest.encoders.sparse_weights import MAX_QUERY_WEIGHT, sparse_dot

log = logging.getLogger(__name__)


def positive(query: Mapping[str, float]) -> dict[str, float]:
    return {str(t): float(w) for t, w in query.items() if w > 0}


def neural_sparse_clause(field: str, query: Mapping[str, float]) -> dict[str, Any]:
    tokens = positive(query)
    if not tokens:
        return {"match_none": {}}
    top = max(tokens.values())
    body: dict[str, Any] = {"query_tokens": tokens}
    if top > MAX_QUERY_WEIGHT:
        scale = MAX_QUERY_WEIGHT / top
        body["query_tokens"] = {t: w * scale for t, w in tokens.items() if w * scale > 0}
        body["boost"] = 1.0 / scale
    return {"neural_sparse": {field: body}}


def split_dotted(query: Mapping[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """(tokens a rank_feature query can address, tokens containing a dot)."""
    tokens = positive(query)
    return {t: w for t, w in tokens.items() if "." not in t}, {t: w for t, w in tokens.items() if "." in t}


def rank_feature_clause(field: str, query: Mapping[str, float]) -> dict[str, Any]:
    """bool.should of linear rank_feature queries for the undotted tokens (match_all if there are none)."""
    plain, _dotted = split_dotted(query)
    if not plain:
        return {"match_all": {}}
    return {
        "bool": {
            "should": [
                {"rank_feature": {"field": f"{field}.{t}", "linear": {}, "boost": w}} for t, w in plain.items()
            ]
        }
    }


def add_dotted_scores(
    hits: list[tuple[str, float, dict[str, Any]]], field: str, dotted: Mapping[str, float], *, base_is_zero: bool
) -> list[tuple[str, float, dict[str, Any]]]:
    """Add the dotted tokens' contribution (query weight x stored weight, quantised as rank_features stores it)."""
    out = []
    for doc_id, score, source in hits:
        doc_map = source.get(field) or {}
        extra = sparse_dot(dotted, doc_map)
        total = (0.0 if base_is_zero else score) + extra
        if base_is_zero and extra <= 0:
            continue  # match_all candidates that share no token with the query are not hits
        out.append((doc_id, total, source))
    out.sort(key=lambda h: -h[1])
    return out
