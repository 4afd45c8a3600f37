"""The model catalogue against the reference page, the models' own figures, and the real bundled model."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from neural_ingest import catalogue
from neural_ingest.catalogue import ENTRIES, ModelMismatchError, get, lookup, verify_loaded
from neural_ingest.config import OpenSearchSinkConfig
from neural_ingest.sinks.mapping import field_mapping

REF = Path(__file__).resolve().parents[1] / "reference"
PAGE = (REF / "opensearch-pretrained-models.md").read_text()
FACTS = (REF / "model-facts.md").read_text()


def _table_rows(text: str, header_start: str) -> list[list[str]]:
    """Rows (cells stripped) of the markdown table whose header line starts with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def _facts_dense() -> dict[str, dict]:
    out = {}
    for cells in _table_rows(FACTS, "| model | dim |"):
        name, dim, pooling, norm, sim, msl = cells[:6]
        similarity, space = (s.strip() for s in sim.split("->"))
        out[name] = {
            "dimension": int(dim),
            "pooling": pooling.lower(),
            "normalized": norm == "yes",
            "similarity": similarity,
            "space_type": space,
            "max_seq_length": int(msl),
        }
    return out


def _facts_sparse() -> dict[str, str]:
    return {cells[0]: re.search(r"\((SPARSE_\w+)\)", cells[1]).group(1) for cells in _table_rows(FACTS, "| model | role |")}


def _page_rows() -> dict[str, dict]:
    """Each model row of the page: name, dimension (dense), links in order of appearance."""
    out = {}
    for line in PAGE.splitlines():
        m = re.match(r"\| `([^`]+)` \|(.*)", line)
        if not m:
            continue
        rest = m.group(2)
        dim = re.match(r"\s*(\d+)-dimensional", rest)
        out[m.group(1)] = {
            "dimension": int(dim.group(1)) if dim else None,
            "links": re.findall(r"\[(model_url|config_url)\]\(([^)]+)\)", rest),
        }
    return out


def _sink() -> OpenSearchSinkConfig:
    return OpenSearchSinkConfig(index="catalogue-test")


# ----------------------------------------------------------------------------- against model-facts.md
def test_facts_tables_parse():
    assert len(_facts_dense()) == 9 and len(_facts_sparse()) == 3


@pytest.mark.parametrize("short", sorted(_facts_dense()))
def test_dense_entry_and_derived_mapping_match_model_facts(short):
    facts = _facts_dense()[short]
    entry = get(short)
    assert entry.kind == "dense" and entry.function_name == "TEXT_EMBEDDING"
    mapping = field_mapping(_sink(), entry.model_info())
    assert mapping["type"] == "knn_vector"
    assert mapping["dimension"] == facts["dimension"]
    assert mapping["method"]["space_type"] == facts["space_type"]
    assert entry.similarity == facts["similarity"]
    assert entry.pooling == facts["pooling"]
    assert entry.normalized is facts["normalized"]
    assert entry.max_seq_length == facts["max_seq_length"]


@pytest.mark.parametrize("short", sorted(_facts_sparse()))
def test_sparse_entry_and_derived_mapping_match_model_facts(short):
    entry = get(short)
    assert entry.kind == "sparse"
    assert entry.function_name == _facts_sparse()[short]
    assert field_mapping(_sink(), entry.model_info()) == {"type": "rank_features"}
    assert entry.dimension is None and entry.space_type is None
    assert entry.max_seq_length == 512 and entry.version == "1.0.0"


def test_space_types_agree_with_model_info():
    from neural_ingest.encoders.base import SPACE_TYPES

    assert catalogue._SPACE_TYPES == SPACE_TYPES


# ----------------------------------------------------------------------------- against the reference page
def test_catalogue_has_the_pages_twelve_models_by_name():
    assert set(_page_rows()) == {e.name for e in ENTRIES}
    assert len(ENTRIES) == 12


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.short_name)
def test_urls_match_the_page_except_documented_corrections(entry):
    links = _page_rows()[entry.name]["links"]
    ours = [u for f in entry.formats for u in (("model_url", f.model_url), ("config_url", f.config_url))]
    differ = [(p, o) for p, o in zip(links, ours) if p != o]
    assert len(links) == len(ours)
    if entry.short_name == "all-MiniLM-L12-v2":
        # The page's TorchScript config_url is the ONNX one; ours is the TorchScript one.
        assert differ == [
            (("config_url", entry.format("ONNX").config_url), ("config_url", entry.format("TORCH_SCRIPT").config_url))
        ]
        assert "/torch_script/config.json" in entry.format("TORCH_SCRIPT").config_url
        assert entry.corrections
    else:
        assert differ == []
    for f in entry.formats:
        assert f"/{entry.version}/" in f.model_url and f"/{entry.version}/" in f.config_url


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.kind == "dense"], ids=lambda e: e.short_name)
def test_page_dimensions_agree_except_the_known_error(entry):
    page_dim = _page_rows()[entry.name]["dimension"]
    if entry.short_name == "multi-qa-mpnet-base-dot-v1":
        assert (page_dim, entry.dimension) == (384, 768)
        assert any("768" in c for c in entry.corrections)
    else:
        assert page_dim == entry.dimension


def test_sparse_hash_is_doc_v1s_and_only_where_the_page_gives_one():
    page_hashes = set(re.findall(r'"model_content_hash_value":\s*"([0-9a-f]{64})"', PAGE))
    assert len(page_hashes) == 1
    # The page's example body carries the doc-v1 url: the hash is doc-v1's, not encoding-v1's.
    example_url = re.search(r'"url":\s*"([^"]+)"', PAGE).group(1)
    doc_v1 = get("opensearch-neural-sparse-encoding-doc-v1")
    assert example_url == doc_v1.format().model_url
    assert doc_v1.model_content_hash_value in page_hashes
    assert get("opensearch-neural-sparse-encoding-v1").model_content_hash_value is None
    assert [e.name for e in ENTRIES if e.model_content_hash_value] == [doc_v1.name]


def test_sparse_roles_and_query_model():
    assert get("opensearch-neural-sparse-encoding-v1").role == "bi-encoder"
    doc = get("opensearch-neural-sparse-encoding-doc-v1")
    assert doc.role == "document-only" and get(doc.query_model).function_name == "SPARSE_TOKENIZE"
    assert get("opensearch-neural-sparse-tokenizer-v1").format().model_url.endswith("tokenizer-v1-1.0.0.zip")


def test_auto_truncation_follows_the_page():
    assert [e.short_name for e in ENTRIES if not e.auto_truncation] == ["msmarco-distilbert-base-tas-b"]


def test_dot_models_are_innerproduct_and_unnormalized():
    dot = {e.short_name for e in ENTRIES if e.space_type == "innerproduct"}
    assert dot == {"msmarco-distilbert-base-tas-b", "multi-qa-mpnet-base-dot-v1"}
    assert all(get(s).normalized is False and get(s).pooling == "cls" for s in dot)
    # paraphrase-* have no Normalize module but are cosine models.
    for s in ("paraphrase-MiniLM-L3-v2", "paraphrase-multilingual-MiniLM-L12-v2"):
        assert get(s).normalized is False and get(s).space_type == "cosinesimil"


# ----------------------------------------------------------------------------- lookup and the load-time check
def test_lookup_accepts_opensearch_hf_and_short_names_but_not_paths():
    e = get("huggingface/sentence-transformers/all-MiniLM-L6-v2")
    assert lookup("sentence-transformers/all-MiniLM-L6-v2") is e
    assert lookup("all-minilm-l6-v2") is e
    assert lookup("/models/all-MiniLM-L6-v2") is None
    assert lookup("opensearch-project/opensearch-neural-sparse-encoding-doc-v1").kind == "sparse"
    with pytest.raises(KeyError, match="not in the model catalogue"):
        get("bert-base-uncased")


def test_verify_loaded_names_both_values():
    with pytest.raises(ModelMismatchError) as err:
        verify_loaded("all-MiniLM-L6-v2", dimension=64, similarity=None, normalized=True)
    assert "64" in str(err.value) and "384" in str(err.value)
    with pytest.raises(ModelMismatchError, match=r"'cosine'.*'dot'"):
        verify_loaded("msmarco-distilbert-base-tas-b", dimension=768, similarity="cosine", normalized=False)
    with pytest.raises(ModelMismatchError, match=r"normalized False \(loaded\) != True"):
        verify_loaded("all-mpnet-base-v2", dimension=768, similarity="cosine", normalized=False)
    # Undeclared similarity is not compared; uncatalogued names are not checked.
    assert verify_loaded("multi-qa-mpnet-base-dot-v1", dimension=768, similarity=None, normalized=False).similarity == "dot"
    assert verify_loaded("/some/dir", dimension=7, similarity="dot", normalized=True) is None


# ----------------------------------------------------------------------------- the real bundled all-MiniLM-L6-v2
def test_minilm_entry_matches_the_real_model(st_model):
    from sentence_transformers.models import Normalize, Pooling

    entry = get("all-MiniLM-L6-v2")
    assert st_model.get_embedding_dimension() == entry.dimension
    pooling = next(m for m in st_model if isinstance(m, Pooling))
    assert pooling.pooling_mode == entry.pooling
    assert any(isinstance(m, Normalize) for m in st_model) is entry.normalized
    assert st_model.max_seq_length == entry.max_seq_length
    assert st_model[0].auto_model.config.model_type == entry.model_type
    # The model's files declare no similarity; sentence-transformers then scores with cosine.
    assert st_model.similarity_fn_name == entry.similarity


def test_minilm_loaded_through_the_encoder_gives_the_catalogue_mapping(minilm_dir):
    from neural_ingest.config import SentenceTransformersEncoderConfig
    from neural_ingest.encoders.dense import SentenceTransformerEncoder

    entry = get("all-MiniLM-L6-v2")
    enc = SentenceTransformerEncoder(SentenceTransformersEncoderConfig(model=entry.name, device="cpu"))
    info = enc.load_model().info
    assert (info.dimension, info.similarity, info.normalized, info.max_seq_length) == (
        entry.dimension,
        entry.similarity,
        entry.normalized,
        entry.max_seq_length,
    )
    assert field_mapping(_sink(), info) == field_mapping(_sink(), entry.model_info())
