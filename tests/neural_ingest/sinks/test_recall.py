"""The recall check's parts (held-out queries, recall@k, sample size) and the k-NN option checks:
engine choice on the real test node, memory options against what each OpenSearch version accepts."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from neural_ingest.config import KnnConfig, OpenSearchSinkConfig
from neural_ingest.pipelines.reindex import recall_check
from neural_ingest.sinks import knn_support, recall


def test_first_sentence_is_held_out_text_of_at_least_three_words():
    text = "json.decoder.JSONDecoder\n\nSimple JSON decoder. Performs the following translations."
    assert recall.first_sentence(text) == "Simple JSON decoder."
    assert recall.first_sentence("Decode  a   string\ninto objects! More here.") == "Decode a string into objects!"
    assert recall.first_sentence("one two") is None and recall.first_sentence("") is None


def test_recall_at_k_is_the_share_of_the_exact_top_k_found():
    exact = [["a", "b", "c", "d"], ["e", "f", "g", "h"]]
    assert recall.recall_at_k([["a", "b", "x", "y"], ["e", "f", "g", "h"]], exact, 4) == pytest.approx((2 / 4 + 1) / 2)
    assert recall.recall_at_k([["b", "a"]], [["a", "b"]], 2) == 1.0  # order inside the top k does not matter
    assert recall.recall_at_k([["a"]], [["a"]], 10) == 1.0  # an index smaller than k


def test_sample_size_stays_small_for_small_indexes():
    assert recall.sample_size(200, 300) == 30
    assert recall.sample_size(200, 50) == 20
    assert recall.sample_size(200, 10) == 10
    assert recall.sample_size(200, 3000) == 200


def test_query_file_errors_name_the_line(tmp_path):
    p = tmp_path / "q.jsonl"
    p.write_text('{"text": "a query"}\n\n{"query": "no text field"}\n')
    with pytest.raises(ValueError, match=r"sink.recall.queries_path .*q.jsonl line 3: not a JSON object with a 'text'"):
        recall.load_queries(str(p))
    p.write_text('{"text": "first"}\n{"text": "second"}\n')
    assert recall.load_queries(str(p)) == ["first", "second"]


def test_config_rejects_impossible_combinations_in_one_line():
    with pytest.raises(ValidationError, match=r"sq_fp16 is a faiss encoder: set sink.knn.engine: faiss"):
        KnnConfig(engine="lucene", encoder="sq_fp16")
    with pytest.raises(ValidationError, match="encoder sq_fp16 and compression_level 32x both quantise"):
        KnnConfig(encoder="sq_fp16", compression_level="32x")
    with pytest.raises(ValidationError):
        KnnConfig(mode="on_disk_please")
    with pytest.raises(ValidationError):
        OpenSearchSinkConfig(index="x", recall={"sample_queries": -1})
    assert KnnConfig().engine is None and KnnConfig().ef_search == 100  # engine chosen per cluster


@pytest.mark.parametrize("major", [2, 3])
def test_memory_options_against_what_each_version_accepts(major):
    """Probed with index creation on 2.19.6 and 3.5.0: lucene takes 1x and 4x, faiss 1x, 2x, 8x-32x."""
    bad = knn_support.option_problems(KnnConfig(engine="lucene", compression_level="32x"), major)
    assert bad == [(f"sink.knn.compression_level 32x: the lucene engine on OpenSearch {major}.x accepts only 1x, 4x: pick "
                    "one of those (or engine faiss for 2x, 8x-32x)")]
    assert knn_support.option_problems(KnnConfig(engine="faiss", compression_level="4x"), major)
    assert not knn_support.option_problems(KnnConfig(engine="faiss", mode="on_disk", compression_level="32x"), major)
    assert not knn_support.option_problems(KnnConfig(engine="lucene", mode="on_disk", compression_level="4x"), major)
    on_disk_1x = knn_support.option_problems(KnnConfig(engine="faiss", mode="on_disk", compression_level="1x"), major)
    assert bool(on_disk_1x) == (major == 2)  # 3.x faiss accepts it, 2.19 refuses


def test_engine_is_chosen_from_what_the_real_node_can_run(os_client):
    """faiss where the node has its native libraries, lucene elsewhere; options that need faiss say so."""
    has_faiss, why = knn_support.faiss_available(os_client)
    knn, problems = knn_support.resolve(KnnConfig(), os_client)
    assert knn.engine == ("faiss" if has_faiss else "lucene") and problems == []
    knn, problems = knn_support.resolve(KnnConfig(encoder="sq_fp16"), os_client)
    if has_faiss:
        assert problems == []
    else:
        assert why and problems == [(f"sink.knn: encoder sq_fp16: only the faiss engine has it, and this cluster has none "
                                     f"({why}): remove it or use a node with the faiss libraries")]
    knn, problems = knn_support.resolve(KnnConfig(engine="lucene"), os_client)
    assert knn.engine == "lucene" and problems == []
    knn, problems = knn_support.resolve(KnnConfig(engine="faiss"), os_client)
    refused = (f"sink.knn.engine faiss: this cluster cannot run it ({why}): set sink.knn.engine: lucene (or null to "
               "choose), or use a node with the faiss libraries (scripts/opensearch-local.sh)")
    assert problems == ([] if has_faiss else [refused])


def test_reindex_recall_gate():
    measured = {"k": 10, "queries": 30, "recall_at_k": 0.93, "engine": "lucene", "params": {"m": 16}}
    assert not recall_check(measured, 0.95).ok
    assert "0.930 of the exact top 10" in recall_check(measured, 0.95).detail
    assert recall_check(measured, 0.9).ok and recall_check(measured, None).ok
    assert recall_check({"k": 10, "queries": 0, "recall_at_k": None, "skipped": "chunked index"}, 0.9).ok
    assert recall_check(None, 0.9).ok  # the check was off
    assert not recall_check({"k": 10, "queries": 0, "recall_at_k": None, "error": "TransportError: boom"}, 0.9).ok
