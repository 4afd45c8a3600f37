"""The public Python API (neural_ingest/beam.py) inside a user's own pipeline: WriteToOpenSearch on dicts and
Documents against the real OpenSearch, the encoders as RunInference ModelHandlers with the real MiniLM and a
tiny sparse model, EmbedAndIndex creating its k-NN index. A 429 needs the fake node (tests/fake_cluster.py)."""
from __future__ import annotations

import inspect

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference
from apache_beam.testing.util import assert_that, equal_to
from fake_cluster import Clock, Node
from hypothesis import given, settings
from hypothesis import strategies as st
from support import MINILM

import neural_ingest
from neural_ingest import beam as api
from neural_ingest.config import ConfigError, HashEncoderConfig, SentenceTransformersEncoderConfig
from neural_ingest.records import Document


def counters(result) -> dict[str, int]:
    got = result.metrics().query(MetricsFilter().with_namespace("neural_ingest"))["counters"]
    out: dict[str, int] = {}
    for r in got:
        out[r.key.metric.name] = out.get(r.key.metric.name, 0) + int(r.committed or r.attempted or 0)
    return out


def fates(result: api.WriteResult):
    """(indexed ids, [(doc_id, stage, error_type, message)] of failed, of skipped) checked inside the pipeline."""
    letters = beam.Map(lambda d: (d.doc_id, d.stage, d.error_type))
    return result.indexed, result.failed | "F" >> letters, result.skipped | "S" >> letters


def test_the_public_names_are_exactly_all():
    assert sorted(api.__all__) == [
        "DenseModelHandler",
        "EmbedAndIndex",
        "NeuralSparseModelHandler",
        "WriteResult",
        "WriteToOpenSearch",
    ]
    assert set(neural_ingest.__all__) == {*api.__all__, "__version__"}
    assert neural_ingest.WriteToOpenSearch is api.WriteToOpenSearch
    for name in api.__all__:
        assert ">>>" not in (doc := inspect.getdoc(getattr(api, name)) or "") and len(doc.splitlines()) > 3, name


def reason_names_the_field(messages) -> None:
    assert sorted(messages) == [
        "expected a dict or a Document, got str",
        "id field 'doc_id' is missing or empty: add it to the record or set id_field",
    ]


def test_dicts_are_indexed_and_one_without_its_id_is_a_dead_letter(opensearch_url, os_client, index_name):
    rows = [
        {"doc_id": "a", "title": "first", "vec": np.arange(3, dtype=np.float32)},
        {"doc_id": 7, "title": "second"},
        {"title": "no id"},
        "not a record",
    ]
    with beam.Pipeline() as p:
        result = p | beam.Create(rows) | api.WriteToOpenSearch(index_name, [opensearch_url], id_field="doc_id", max_docs=2)
        indexed, failed, skipped = fates(result)
        assert_that(indexed, equal_to(["a", "7"]), label="indexed")
        assert_that(failed, equal_to([(None, "index", "missing_id"), (None, "index", "not_an_object")]), label="failed")
        assert_that(skipped, equal_to([]), label="skipped")
        assert_that(result.failed | beam.Map(lambda d: d.message), reason_names_the_field, label="reason")
    os_client.indices.refresh(index=index_name)
    got = {h["_id"]: h["_source"] for h in os_client.search(index=index_name, body={"size": 10})["hits"]["hits"]}
    assert got == {"a": {"doc_id": "a", "title": "first", "vec": [0.0, 1.0, 2.0]}, "7": {"doc_id": 7, "title": "second"}}
    assert counters(p.result) == {"indexed": 2, "failed.index.missing_id": 1, "failed.index.not_an_object": 1}


def test_documents_are_indexed_as_the_cli_indexes_them(opensearch_url, os_client, index_name):
    doc = Document("d1", "some text", {"topic": "t"}, embeddings={"embedding": np.array([0.5, 0.25], dtype=np.float32)})
    with beam.Pipeline() as p:
        result = p | beam.Create([doc]) | api.WriteToOpenSearch(index_name, opensearch_url, in_flight=0)
        assert_that(result.indexed, equal_to(["d1"]))
    src = os_client.get(index=index_name, id="d1")["_source"]
    assert src == {"topic": "t", "text": "some text", "embedding": [0.5, 0.25]}


def test_a_429_from_the_cluster_is_retried_item_by_item(monkeypatch):
    """A full write queue answers every item 429 once: only those items are sent again, none is a dead letter."""
    from neural_ingest.sinks import opensearch_client

    node = Node(Clock(), stalls=0, rejects=1)
    monkeypatch.setattr(opensearch_client, "make_client", lambda cfg, timeout=None: node)
    rows = [{"id": str(i), "n": i} for i in range(5)]
    with beam.Pipeline() as p:
        result = p | beam.Create(rows) | api.WriteToOpenSearch("docs", initial_backoff=0.001)
        assert_that(result.indexed, equal_to([str(i) for i in range(5)]), label="indexed")
        assert_that(result.failed, equal_to([]), label="failed")
    assert node.bulk_calls == 2 and node.bodies[0] == node.bodies[1]
    assert counters(p.result)["retried.index.items"] == 5


def test_a_bad_argument_is_one_line_naming_it(monkeypatch):
    with pytest.raises(
        ConfigError, match=r"^WriteToOpenSearch\(index='docs'\): argument max_bytes: .*greater than or equal to 1024$"
    ):
        api.WriteToOpenSearch("docs", max_bytes=10)
    monkeypatch.delenv("NI_TEST_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="password_env NI_TEST_PASSWORD is not set"):
        api.WriteToOpenSearch("docs", username="u", password_env="NI_TEST_PASSWORD")
    monkeypatch.setenv("NI_TEST_PASSWORD", "s3cret")
    w = api.WriteToOpenSearch("docs", username="u", password_env="NI_TEST_PASSWORD", busy_deadline=60)
    assert w.config.password.get_secret_value() == "s3cret" and "s3cret" not in repr(w.config)
    assert (w.config.bulk.busy_deadline, w.config.bulk.max_docs) == (60, 500)  # unset: the CLI's default


@pytest.fixture(scope="module")
def dense():
    return api.DenseModelHandler(MINILM, device="cpu", batch_size=4)


def test_dense_handler_is_a_beam_model_handler(dense, st_model):
    assert isinstance(dense, ModelHandler)
    for method in ("load_model", "run_inference", "get_num_bytes", "validate_inference_args"):  # the installed Beam's API
        assert (
            inspect.signature(getattr(ModelHandler, method)).parameters.keys()
            == inspect.signature(getattr(api.DenseModelHandler, method)).parameters.keys()
        )
    assert dense.batch_elements_kwargs() == {"min_batch_size": 4, "max_batch_size": 4}  # the encoder's batch_size
    assert (
        api.DenseModelHandler(MINILM).batch_elements_kwargs()["max_batch_size"]
        == SentenceTransformersEncoderConfig(model="x").batch_size
    )
    texts = [f"text number {i} about search" for i in range(6)]
    want = st_model.encode(texts, convert_to_numpy=True)
    with beam.Pipeline() as p:
        texts_pc = p | "Texts" >> beam.Create(texts)
        plain = texts_pc | "Plain" >> RunInference(dense)
        keyed = texts_pc | beam.Map(lambda t: (t.split()[2], t)) | "Keyed" >> RunInference(KeyedModelHandler(dense))

        def close(results):
            assert len(results) == 6
            for r in results:
                assert isinstance(r, PredictionResult) and r.model_id == MINILM
                np.testing.assert_allclose(r.inference, want[texts.index(r.example)], atol=1e-5)

        assert_that(plain, close, label="plain")
        assert_that(keyed | beam.MapTuple(lambda k, r: k == r.example.split()[2]), equal_to([True] * 6), label="keyed")
    with pytest.raises(TypeError, match="encodes str elements, got dict"):
        dense.run_inference([{"text": "x"}], dense.load_model())


def test_sparse_handler_gives_rank_features_maps(tmp_path):
    from sparse_models import build_mlm, reference_maps

    model_dir = build_mlm(tmp_path / "tiny", seed=0)
    handler = api.NeuralSparseModelHandler(str(model_dir), device="cpu")
    assert handler.batch_elements_kwargs() == {"min_batch_size": 8, "max_batch_size": 8}
    texts = ["open search with sparse vectors", "the cat"]
    got = list(handler.run_inference(texts, handler.load_model()))
    for r, want in zip(got, reference_maps(model_dir, texts)):
        assert set(r.inference) == set(want) and all(w > 0 for w in r.inference.values())
        assert all(abs(r.inference[t] - w) <= 1e-6 + 1e-4 * w for t, w in want.items())


def test_embed_and_index_creates_the_knn_index_and_routes_every_record(opensearch_url, os_client, index_name):
    enc = HashEncoderConfig(dimension=8)
    rows = [
        {"id": "1", "title": "alpha", "year": 2024},
        {"id": "2", "title": "beta"},
        {"title": "no id"},
        {"id": "4", "title": "  "},
        Document("5", "a document", {"year": 1999}),
    ]
    sink = api.WriteToOpenSearch(index_name, opensearch_url)
    with beam.Pipeline() as p:
        result = p | beam.Create(rows) | api.EmbedAndIndex(enc, sink, text_fields=["title"], metadata_fields=["year"])
        indexed, failed, skipped = fates(result)
        assert_that(indexed, equal_to(["1", "2", "5"]), label="indexed")
        assert_that(failed, equal_to([(None, "prepare", "missing_id")]), label="failed")
        assert_that(skipped, equal_to([("4", "prepare", "empty_text")]), label="skipped")
    props = os_client.indices.get_mapping(index=index_name)[index_name]["mappings"]["properties"]
    assert props["embedding"]["type"] == "knn_vector" and props["embedding"]["dimension"] == 8
    src = os_client.get(index=index_name, id="1")["_source"]
    assert src["text"] == "alpha" and src["year"] == 2024 and len(src["embedding"]) == 8
    c = counters(p.result)
    assert (c["indexed"], c["encoded.embedding"], c["failed.prepare.missing_id"], c["skipped.empty_text"]) == (3, 3, 1, 1)


def test_embed_and_index_rejects_two_encoders_on_one_field():
    with pytest.raises(ConfigError, match="the same field"):
        api.EmbedAndIndex([HashEncoderConfig(), HashEncoderConfig()], api.WriteToOpenSearch("docs"))


def test_the_readme_example_runs_as_written(opensearch_url, os_client, index_name, capsys):
    from support import ROOT

    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("## Python API (stable)") :]
    code = block[block.index("```python\n") + 10 : block.index("```", block.index("```python\n") + 10)]
    assert "http://127.0.0.1:9200" in code and '"articles"' in code
    exec(
        compile(code.replace("http://127.0.0.1:9200", opensearch_url).replace('"articles"', repr(index_name)), "README", "exec"),
        {},
    )
    assert os_client.get(index=index_name, id="1")["_source"]["text"] == "Hubble's law"
    assert "missing_id id field 'id' is missing or empty" in capsys.readouterr().out


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.lists(st.integers(), max_size=3))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.dictionaries(st.sampled_from(["id", "title", "n"]), _VALUES, max_size=3), _VALUES))
def test_every_record_is_a_document_or_a_dead_letter_never_an_error(record):
    """WriteToOpenSearch's input step: whatever a user's PCollection holds, one outcome each."""
    (out,) = list(api._RecordToDocumentFn("id").process(record))
    raw = record.get("id") if isinstance(record, dict) else None
    if isinstance(out, Document):
        assert out.id == str(raw).strip() and out.id and out.metadata is record
    else:
        assert out.tag == "dead_letter" and out.value.stage == "index" and out.value.record is record
        if not isinstance(record, dict):
            assert out.value.error_type == "not_an_object"
        else:
            missing = raw is None or (isinstance(raw, str) and not raw.strip())
            assert out.value.error_type == ("missing_id" if missing else "invalid_id")
