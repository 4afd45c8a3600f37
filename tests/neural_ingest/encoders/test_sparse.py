"""The neural sparse encoder against the OpenSearch formula computed independently from raw MLM logits."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sparse_models import assert_maps_close, build_mlm, build_st_doc_only, reference_maps

TEXTS = [
    "Open search with sparse vectors.",
    "Testing the model, again and again... the end",
    "x",
    "A much longer document " * 30,
]
SPECIALS = {"[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"}


def make(model: str, **kw):
    from neural_ingest.config import NeuralSparseEncoderConfig
    from neural_ingest.encoders import make_encoder

    enc = make_encoder(NeuralSparseEncoderConfig(model=model, device="cpu", **kw))
    return enc, enc.load_model()


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory) -> Path:
    return build_mlm(tmp_path_factory.mktemp("sparse") / "tiny-mlm", seed=0)


def test_documents_follow_the_opensearch_formula(mlm_dir):
    enc, loaded = make(str(mlm_dir))
    assert loaded.info.kind == "sparse" and loaded.info.dimension == 30522
    assert loaded.info.extra["activation"] == "log1p_relu" and loaded.info.extra["query_mode"] == "model"
    got = enc.encode(loaded, TEXTS)
    want = reference_maps(mlm_dir, TEXTS)
    for g, w in zip(got, want):
        assert 20 < len(g) < 1000  # the tiny model is sparse, like trained ones
        assert_maps_close(g, w)
        assert all(v > 0 for v in g.values())
        assert not SPECIALS & set(g)


def test_sentence_transformers_alone_keeps_special_tokens_which_the_encoder_removes(mlm_dir):
    """Why the encoder clears special tokens: SpladePooling does not (the tiny model makes them win)."""
    from sentence_transformers import SparseEncoder

    st = SparseEncoder(str(mlm_dir), device="cpu")
    raw = st.encode(["hello world"], convert_to_tensor=True, convert_to_sparse_tensor=False)[0].numpy()
    special_ids = st.tokenizer.all_special_ids
    assert np.all(raw[[i for i in special_ids if i != st.tokenizer.pad_token_id]] > 0)
    enc, loaded = make(str(mlm_dir))
    assert not SPECIALS & set(enc.encode(loaded, ["hello world"])[0])


def test_vocabulary_strings_are_the_ones_opensearch_emits(mlm_dir):
    enc, loaded = make(str(mlm_dir))
    tokens = set().union(*enc.encode(loaded, TEXTS))
    assert any(t.startswith("##") for t in tokens)  # word pieces keep their ##, as the models emit them
    assert "." in tokens  # the tiny model lets "." through: dotted tokens reach the index


def test_activation_override_log1p_log1p_relu(mlm_dir):
    enc, loaded = make(str(mlm_dir), activation="log1p_log1p_relu")
    assert loaded.info.extra["activation"] == "log1p_log1p_relu"
    got = enc.encode(loaded, TEXTS[:2])
    for g, w in zip(got, reference_maps(mlm_dir, TEXTS[:2], activation="log1p_log1p_relu")):
        assert_maps_close(g, w)
    # and it is not the single-log formula
    single = reference_maps(mlm_dir, TEXTS[:1])[0]
    top = max(single, key=single.get)
    assert got[0][top] < single[top]


def test_max_seq_length_truncates_like_the_tokenizer(mlm_dir):
    enc, loaded = make(str(mlm_dir), max_seq_length=16)
    got = enc.encode(loaded, TEXTS[3:])
    assert_maps_close(got[0], reference_maps(mlm_dir, TEXTS[3:], max_length=16)[0])
    full = reference_maps(mlm_dir, TEXTS[3:])[0]
    assert set(got[0]) != set(full)  # the cut-off really changed the map


def test_bi_encoder_queries_go_through_the_model_unpruned(mlm_dir):
    enc, loaded = make(str(mlm_dir), prune={"type": "top_k", "ratio": 5})
    docs = enc.encode(loaded, TEXTS[:1])
    queries = enc.encode_queries(loaded, TEXTS[:1])
    full = reference_maps(mlm_dir, TEXTS[:1])[0]
    assert_maps_close(queries[0], full)
    top5 = sorted(full, key=full.get, reverse=True)[:5]
    assert set(docs[0]) == set(top5)


def test_pruning_is_applied_to_documents(mlm_dir):
    full = reference_maps(mlm_dir, TEXTS[:2])
    enc, loaded = make(str(mlm_dir), prune={"type": "max_ratio", "ratio": 0.5})
    for g, f in zip(enc.encode(loaded, TEXTS[:2]), full):
        m = max(f.values())
        assert set(g) == {t for t, w in f.items() if w >= 0.5 * m}


def test_doc_only_model_with_idf_json_queries_by_tokenizer_and_idf(tmp_path):
    idf = {"open": 3.5, "search": 2.0, "the": 0.0}
    d = build_mlm(tmp_path / "doc-only", seed=1, idf=idf)
    enc, loaded = make(str(d))
    assert loaded.info.extra["query_mode"] == "tokenizer"
    q = enc.encode_queries(loaded, ["Open SEARCH the engines open"])[0]
    # distinct tokens, weight idf.get(token, 1.0), zero weights dropped, no special tokens
    assert q == {"open": 3.5, "search": 2.0, "engines": 1.0}
    # documents still go through the model
    assert_maps_close(enc.encode(loaded, TEXTS[:1])[0], reference_maps(d, TEXTS[:1])[0])


def test_query_mode_and_idf_path_from_config(mlm_dir, tmp_path):
    table = tmp_path / "tokenizer-v1"
    table.mkdir()
    (table / "idf.json").write_text(json.dumps({"vector": 4.0}))
    enc, loaded = make(str(mlm_dir), query_mode="tokenizer", idf_path=str(table))
    assert enc.encode_queries(loaded, ["vector vector sparse"]) == [{"vector": 4.0, "sparse": 1.0}]


def test_catalogue_name_gives_activation_and_query_mode(mlm_dir, tmp_path):
    """A bare Hugging Face directory carries no activation: a doc-v3 name means log(1+log(1+relu))."""
    import shutil

    models = tmp_path / "models"
    shutil.copytree(mlm_dir, models / "opensearch-neural-sparse-encoding-doc-v3-distill")
    enc, loaded = make("opensearch-neural-sparse-encoding-doc-v3-distill", models_dir=str(models))
    assert loaded.info.extra["activation"] == "log1p_log1p_relu"
    assert loaded.info.extra["activation_from"] == "catalogue"
    assert loaded.info.extra["query_mode"] == "tokenizer"
    got = enc.encode(loaded, TEXTS[:1])[0]
    assert_maps_close(got, reference_maps(mlm_dir, TEXTS[:1], activation="log1p_log1p_relu")[0])

    shutil.copytree(mlm_dir, models / "opensearch-neural-sparse-encoding-v1")
    _enc, loaded = make("amazon/neural-sparse/opensearch-neural-sparse-encoding-v1", models_dir=str(models))
    assert loaded.info.extra["activation"] == "log1p_relu" and loaded.info.extra["query_mode"] == "model"


def test_doc_only_model_finds_the_query_tokenizer_idf_beside_it(mlm_dir, tmp_path):
    import shutil

    models = tmp_path / "models"
    shutil.copytree(mlm_dir, models / "opensearch-neural-sparse-encoding-doc-v1")
    (models / "opensearch-neural-sparse-tokenizer-v1").mkdir()
    (models / "opensearch-neural-sparse-tokenizer-v1" / "idf.json").write_text(json.dumps({"sparse": 2.5}))
    enc, loaded = make("amazon/neural-sparse/opensearch-neural-sparse-encoding-doc-v1", models_dir=str(models))
    assert loaded.info.extra["query_mode"] == "tokenizer"
    assert enc.encode_queries(loaded, ["sparse vector"]) == [{"sparse": 2.5, "vector": 1.0}]


def test_the_query_tokenizer_is_not_a_document_encoder():
    from neural_ingest.config import NeuralSparseEncoderConfig
    from neural_ingest.encoders import make_encoder

    enc = make_encoder(NeuralSparseEncoderConfig(model="amazon/neural-sparse/opensearch-neural-sparse-tokenizer-v1"))
    with pytest.raises(ValueError, match="not a document"):
        enc.load_model()


def test_sentence_transformers_doc_only_model(mlm_dir, tmp_path):
    """A model saved by sentence-transformers: Router(query: SparseStaticEmbedding, document: MLM +
    SpladePooling("log1p_relu")). Its activation is read from its files; queries use its static weights."""
    d = build_st_doc_only(tmp_path / "st-doc", mlm_dir, query_weights={"open": 2.0, "search": 1.5}, activation="log1p_relu")
    enc, loaded = make(str(d))
    assert loaded.info.extra["activation"] == "log1p_log1p_relu"
    assert loaded.info.extra["activation_from"] == "model files"
    assert loaded.info.extra["query_mode"] == "tokenizer"
    got = enc.encode(loaded, TEXTS[:2])
    for g, w in zip(got, reference_maps(mlm_dir, TEXTS[:2], activation="log1p_log1p_relu")):
        assert_maps_close(g, w)
    q = enc.encode_queries(loaded, ["open search engines"])[0]
    assert q == pytest.approx({"open": 2.0, "search": 1.5})  # tokens without a weight are absent


def test_token_lengths(mlm_dir):
    enc, loaded = make(str(mlm_dir))
    assert enc.token_lengths(loaded, ["hello world"]) == [4]
