"""Pruning rules, each checked against its neural-search definition on hand-made maps."""
from __future__ import annotations

import numpy as np
import pytest

from neural_ingest.encoders.sparse_prune import prune, ratio_problem

VEC = {"a": 5.0, "b": 3.0, "c": 1.5, "d": 0.5}  # sum 10


def test_top_k_keeps_the_k_largest():
    assert prune(VEC, "top_k", 2) == {"a": 5.0, "b": 3.0}
    assert prune(VEC, "top_k", 1) == {"a": 5.0}
    assert prune(VEC, "top_k", 10) == VEC  # fewer tokens than k: all kept


def test_top_k_order_of_input_does_not_matter():
    shuffled = {"d": 0.5, "c": 1.5, "a": 5.0, "b": 3.0}
    assert set(prune(shuffled, "top_k", 3)) == {"a", "b", "c"}


def test_max_ratio_keeps_weights_at_least_ratio_times_max():
    # max 5: ratio 0.3 -> threshold 1.5, and 1.5 itself is kept (>=)
    assert prune(VEC, "max_ratio", 0.3) == {"a": 5.0, "b": 3.0, "c": 1.5}
    assert prune(VEC, "max_ratio", 0.61) == {"a": 5.0}
    assert prune(VEC, "max_ratio", 0.0) == VEC


def test_alpha_mass_keeps_the_prefix_whose_running_sum_stays_within_alpha_of_the_total():
    # sorted 5, 3, 1.5, 0.5; running sums 5, 8, 9.5, 10; alpha 0.8 -> limit 8: 5 and 8 are <= 8
    assert prune(VEC, "alpha_mass", 0.8) == {"a": 5.0, "b": 3.0}
    assert prune(VEC, "alpha_mass", 0.95) == {"a": 5.0, "b": 3.0, "c": 1.5}
    # the largest weight alone is above alpha * total: nothing is kept (neural-search does the same)
    assert prune(VEC, "alpha_mass", 0.4) == {}


def test_alpha_mass_uses_float32_arithmetic_like_neural_search():
    # float32(0.1) * float32(total) is what Java compares against; a float64 limit would differ here.
    vec = {"x": 0.1, "y": 0.2, "z": 0.7}
    total32 = np.float32(np.sum(np.asarray([0.1, 0.2, 0.7], dtype=np.float32), dtype=np.float64))
    alpha = 0.7
    limit32 = np.float32(alpha) * total32
    run = np.float32(0)
    want = set()
    for t in ("z", "y", "x"):
        run = np.float32(run + np.float32(vec[t]))
        if run <= limit32:
            want.add(t)
    assert set(prune(vec, "alpha_mass", alpha)) == want


def test_abs_value_keeps_weights_at_or_above_the_threshold():
    assert prune(VEC, "abs_value", 1.5) == {"a": 5.0, "b": 3.0, "c": 1.5}
    assert prune(VEC, "abs_value", 100) == {}
    assert prune(VEC, "abs_value", 0) == VEC


def test_none_keeps_everything_and_empty_maps_stay_empty():
    assert prune(VEC, "none", None) == VEC
    assert prune({}, "top_k", 3) == {}


@pytest.mark.parametrize(
    "ptype,ratio",
    [("top_k", 2.5), ("top_k", 0), ("top_k", None), ("max_ratio", 1.0), ("alpha_mass", -0.1), ("abs_value", -1), ("bm25", 1)],
)
def test_invalid_ratios_are_refused_with_neural_search_ranges(ptype, ratio):
    assert ratio_problem(ptype, ratio)
    with pytest.raises(ValueError):
        prune(VEC, ptype, ratio)


def test_pruning_refuses_non_positive_weights_like_neural_search():
    with pytest.raises(ValueError, match="positive"):
        prune({"a": 1.0, "b": 0.0}, "top_k", 1)


def test_config_validates_prune_ratio():
    from neural_ingest.config import ConfigError, parse_config

    base = {"source": {"type": "jsonl", "path": "x.jsonl"}}
    ok = parse_config({**base, "encoder": {"type": "neural_sparse", "model": "m", "prune": {"type": "top_k", "ratio": 64}}})
    assert ok.encoders[0].prune.type == "top_k"
    with pytest.raises(ConfigError, match="ratio must be in"):
        parse_config({**base, "encoder": {"type": "neural_sparse", "model": "m", "prune": {"type": "max_ratio", "ratio": 1.5}}})
