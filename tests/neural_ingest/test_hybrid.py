"""Client-side hybrid fusion: neural-search's min_max normalisation and weighted arithmetic mean."""
from __future__ import annotations

import pytest

from neural_ingest.hybrid import fuse, min_max, search_pipeline_body
from neural_ingest.sinks.base import Hit


def hits(*pairs):
    return [Hit(i, s, {"text": i}) for i, s in pairs]


def test_min_max_rules():
    assert min_max([4.0, 3.0, 2.0]) == pytest.approx([1.0, 0.5, 0.001])  # the minimum becomes 0.001, not 0
    assert min_max([7.0]) == [1.0]  # a single result scores 1
    assert min_max([2.0, 2.0]) == [1.0, 1.0]
    assert min_max([]) == []


def test_fusion_matches_the_hand_computed_normalization_processor_result():
    # A 3-document probe index on OpenSearch (knn cosinesimil + neural_sparse, sub-scores rounded here) gave
    # 0.50696045, 0.5005, 0.5005 through the normalization processor:
    dense = hits(("1", 1.0), ("2", 0.9743416), ("3", 0.9472136))
    sparse = hits(("3", 3.5), ("2", 2.5), ("1", 1.5))
    got = fuse([dense, sparse], (0.5, 0.5), k=3)
    assert [h.id for h in got] == ["2", "1", "3"]
    assert [h.score for h in got] == pytest.approx([0.50696045, 0.5005, 0.5005], rel=1e-5)


def test_a_document_missing_from_one_sub_query_scores_zero_there_and_counts_in_the_mean():
    dense = hits(("a", 2.0), ("b", 1.0))
    sparse = hits(("c", 5.0), ("a", 1.0))
    got = {h.id: h.score for h in fuse([dense, sparse], (0.5, 0.5), k=10)}
    assert got == pytest.approx({"a": (1.0 + 0.001) / 2, "b": 0.001 / 2, "c": 1.0 / 2})


def test_weights_shift_the_ranking_and_are_normalised():
    dense = hits(("a", 2.0), ("b", 1.0))
    sparse = hits(("b", 2.0), ("a", 1.0))
    assert fuse([dense, sparse], (0.8, 0.2), k=1)[0].id == "a"
    assert fuse([dense, sparse], (0.2, 0.8), k=1)[0].id == "b"
    assert fuse([dense, sparse], (2, 8), k=1)[0].score == pytest.approx(fuse([dense, sparse], (0.2, 0.8), k=1)[0].score)
    with pytest.raises(ValueError):
        fuse([dense, sparse], (0, 0))


def test_search_pipeline_body_names_the_same_techniques():
    proc = search_pipeline_body([0.3, 0.7])["phase_results_processors"][0]["normalization-processor"]
    assert proc["normalization"]["technique"] == "min_max"
    assert proc["combination"] == {"technique": "arithmetic_mean", "parameters": {"weights": [0.3, 0.7]}}
