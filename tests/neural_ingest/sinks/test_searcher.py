"""The sink builds what `search` queries (Sink.searcher), from the chunking it was built with; no cluster needed
(the OpenSearch client is made lazily), and the exact scoring both Parquet searches share."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from neural_ingest.chunking import ChunkPlan
from neural_ingest.config import OpenSearchSinkConfig, ParquetSinkConfig, parse_config
from neural_ingest.sinks import REPLACE, UPSERT, make_sink
from neural_ingest.sinks.base import SinkError
from neural_ingest.sinks.opensearch_chunks import ChunkedOpenSearch
from neural_ingest.sinks.parquet_chunks import ChunkedParquet
from neural_ingest.sinks.scoring import dense_scores, sparse_scores

CHUNKED = ChunkPlan(mode="chunk", storage="separate", field="parts", token_limit=128)
COUNTS_TRUNCATION = ChunkPlan(mode="truncate", token_limit=128)  # a run's plan that only counts truncation


def sink_cfgs(tmp_path):
    return [OpenSearchSinkConfig(index="docs"), ParquetSinkConfig(path=str(tmp_path / "ds"))]


@pytest.mark.parametrize("which", [0, 1])
def test_make_sink_builds_the_sink_with_its_mode_and_chunking(tmp_path, which):
    sink = make_sink(sink_cfgs(tmp_path)[which], UPSERT, CHUNKED)
    assert sink.mode == UPSERT and sink.chunking is CHUNKED


@pytest.mark.parametrize("which", [0, 1])
def test_without_chunks_the_sink_is_its_own_searcher(tmp_path, which):
    for plan in (None, COUNTS_TRUNCATION):
        sink = make_sink(sink_cfgs(tmp_path)[which], REPLACE, plan)
        assert sink.chunking is None
        assert sink.searcher(["embedding"]) is sink


@pytest.mark.parametrize("which,kind", [(0, ChunkedOpenSearch), (1, ChunkedParquet)])
def test_a_chunked_sink_gives_its_own_chunk_searcher(tmp_path, which, kind):
    # `search` has no ChunkPlan (no model is loaded): the config's chunking block is the layout
    chunking = parse_config(
        {
            "source": {"type": "jsonl", "path": "x.jsonl", "text_fields": ["body"]},
            "encoder": {"type": "sentence_transformers", "model": "all-MiniLM-L6-v2"},
            "chunking": {"mode": "chunk", "storage": "separate", "field": "parts"},
        }
    ).chunking
    sink = make_sink(sink_cfgs(tmp_path)[which], chunking=chunking)
    searcher = sink.searcher(["embedding"])
    assert isinstance(searcher, kind) and searcher.plan is chunking and searcher.fields == ["embedding"]
    assert searcher.describe() == sink.describe()


def test_an_unknown_write_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="write mode 'merge'"):
        make_sink(ParquetSinkConfig(path=str(tmp_path / "ds")), "merge")


def test_a_missing_dataset_is_one_error_naming_the_fix(tmp_path):
    sink = make_sink(ParquetSinkConfig(path=str(tmp_path / "nowhere")))
    with pytest.raises(SinkError, match=r"no Parquet dataset at .*nowhere: check sink.path"):
        sink.searchable_count()


def test_dense_scores_follow_the_knn_plugin_per_space():
    m = np.asarray([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    q = np.asarray([1.0, 0.0], dtype=np.float32)
    np.testing.assert_allclose(dense_scores(m, q, None), [1.0, 0.5, 0.0])  # cosinesimil: (1 + cos) / 2
    np.testing.assert_allclose(dense_scores(m, q, "innerproduct"), [2.0, 1.0, 0.5])  # dot + 1, or 1 / (1 - dot)
    np.testing.assert_allclose(dense_scores(m, q, "l2"), [1.0, 1 / 3, 1 / 5])  # 1 / (1 + squared distance)


def test_sparse_scores_are_dot_products_and_zero_without_a_shared_token():
    col = pa.array([[("tide", 2.0), ("moon", 1.0)], [("sun", 3.0)], []], pa.map_(pa.string(), pa.float32()))
    scores = sparse_scores(col, {"tide": 1.5, "moon": 0.5, "never": 4.0, "zero": 0.0})
    np.testing.assert_allclose(scores, [3.5, 0.0, 0.0], rtol=1e-2)  # stored weights keep rank_features' precision
