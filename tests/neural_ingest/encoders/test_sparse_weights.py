"""What a rank_features weight may be, and the precision OpenSearch stores it with."""
from __future__ import annotations

import math

import numpy as np
import pytest

from neural_ingest.encoders.base import ModelInfo, vector_problem
from neural_ingest.encoders.sparse_weights import FLOAT32_TINY, drop_absent, lucene_quantize, sparse_dot, weight_problem

SPARSE = ModelInfo(name="t", kind="sparse")


def test_drop_absent_removes_zero_and_subnormal_weights_only():
    vec = {"a": 0.0, "b": 1e-40, "c": 0.5, "d": -1.0, "e": float("nan"), "f": FLOAT32_TINY}
    assert drop_absent(vec) == {"c": 0.5, "d": -1.0, "e": vec["e"], "f": FLOAT32_TINY}


@pytest.mark.parametrize("w", [-1.0, 0.0, float("nan"), float("inf"), -float("inf"), 1e-39, 1e39, "1.0", True])
def test_weights_opensearch_rejects_are_problems(w):
    assert weight_problem("tok", w)
    assert vector_problem({"ok": 1.0, "tok": w}, SPARSE)


@pytest.mark.parametrize("w", [FLOAT32_TINY, 1e-30, 0.5, 64.0, 3e38])
def test_positive_normal_float32_weights_are_fine(w):
    assert weight_problem("tok", w) is None
    assert vector_problem({"tok": w, "##ing": 1.0, ".": 2.0}, SPARSE) is None


def test_lucene_quantize_keeps_the_top_17_bits():
    # Values checked against OpenSearch: a document {hello:1.5, ".":0.7, "a.b":2.0, "##ing":0.3} queried with
    # {hello:2, ".":1, "a.b":1, "##ing":1} scored 5.9990234 = 3 + 0.69921875 + 2 + 0.2998046875.
    assert lucene_quantize(np.float32(0.7)).item() == 0.69921875
    assert lucene_quantize(np.float32(0.3)).item() == 0.2998046875
    assert lucene_quantize(np.float32(1.5)).item() == 1.5
    q = lucene_quantize(np.linspace(0.01, 10, 1000))
    x = np.linspace(0.01, 10, 1000).astype(np.float32)
    assert np.all(q <= x) and np.all((x - q) / x < 2**-8)  # truncation, about 0.4 % at most


def test_sparse_dot_matches_the_opensearch_score_from_the_probe():
    doc = {"hello": 1.5, ".": 0.7, "a.b": 2.0, "##ing": 0.3}
    query = {"hello": 2.0, ".": 1.0, "a.b": 1.0, "##ing": 1.0, "absent": 5.0}
    assert math.isclose(sparse_dot(query, doc), 5.9990234, rel_tol=1e-7)
    assert math.isclose(sparse_dot(query, doc, quantize_doc=False), 6.0, rel_tol=1e-7)
    assert sparse_dot({"x": 1.0}, doc) == 0.0
