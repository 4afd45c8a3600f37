"""The knn query's k is a search window, not the number of hits: Lucene's HNSW uses it as its queue."""
from neural_ingest.config import OpenSearchSinkConfig
from neural_ingest.sinks.opensearch import OpenSearchSink


def sink(**knn) -> OpenSearchSink:
    return OpenSearchSink(OpenSearchSinkConfig(index="docs", knn=knn))  # the client is made lazily: no cluster


def test_small_k_searches_a_wide_window():
    clause = sink().knn_clause("embedding", [0.5, 0.25], 3)
    assert clause == {"knn": {"embedding": {"vector": [0.5, 0.25], "k": 100}}}


def test_window_follows_config_and_never_shrinks_below_k():
    assert sink(search_candidates=10).knn_clause("e", [1.0], 3)["knn"]["e"]["k"] == 10
    assert sink(search_candidates=10).knn_clause("e", [1.0], 50)["knn"]["e"]["k"] == 50
    assert sink().knn_clause("e", [1.0], 20_000)["knn"]["e"]["k"] == 10_000
