"""PrepareFn on any record: exactly one outcome (a Document, a dead letter or a skip), never an exception;
a Document's text and id are Unicode and its metadata strict JSON in OpenSearch's forms."""

from __future__ import annotations

import datetime as dt
import json

import apache_beam as beam
from hostile import ANY_TEXT, PY_VALUES, strict_json_loads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neural_ingest.config import SourceConfig
from neural_ingest.records import Document
from neural_ingest.transforms.counters import DEAD_LETTER, SKIPPED
from neural_ingest.transforms.positions import with_position
from neural_ingest.transforms.prepare import IdAndPositionChunkFn, PrepareFn

CFG = SourceConfig(type="jsonl", path="x", text_fields=["title", "body"], metadata_fields=["topic", "when"])
FIELD_VALUES = st.one_of(ANY_TEXT, PY_VALUES)


def outcomes(record, cfg=CFG):
    out = list(PrepareFn(cfg).process(record))
    docs = [o for o in out if isinstance(o, Document)]
    dead = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == DEAD_LETTER]
    skipped = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == SKIPPED]
    assert len(out) == 1 == len(docs) + len(dead) + len(skipped)
    return docs, dead, skipped


def test_lone_surrogates_and_unconvertible_metadata_are_dead_letters_naming_the_field():
    _, dead, _ = outcomes({"id": "1", "title": "bad \ud800"})
    assert dead[0].error_type == "invalid_unicode" and "title" in dead[0].message
    _, dead, _ = outcomes({"id": "1", "title": "ok", "topic": {"x": object()}})
    assert dead[0].error_type == "invalid_metadata" and "'topic.x'" in dead[0].message
    _, dead, _ = outcomes({"id": "\udc80", "title": "ok"})
    assert dead[0].error_type == "invalid_id"


def test_metadata_takes_opensearch_forms_and_content_ids_stay():
    when = dt.datetime(2024, 1, 2, 3, 4, 5)
    docs, _, _ = outcomes(
        {"title": "t", "topic": float("nan"), "when": when},
        SourceConfig(type="jsonl", path="x", id_field=None, text_fields=["title"], metadata_fields=["topic", "when"]),
    )
    assert docs[0].metadata == {"topic": None, "when": "2024-01-02T03:04:05"}
    from neural_ingest.records import content_id

    assert docs[0].id == content_id("t", {"topic": float("nan"), "when": when})  # ids of earlier runs are kept


def test_a_nan_text_field_is_no_text():
    _, dead, _ = outcomes({"id": "1", "title": float("nan")})
    assert dead[0].error_type == "missing_text"
    docs, _, _ = outcomes({"id": "1", "title": float("inf"), "body": "b"})
    assert docs[0].text == "b"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(["id", "title", "body", "topic", "when", "other"]), FIELD_VALUES, max_size=6),
    st.sampled_from(["id", None]),
)
def test_any_record_has_exactly_one_outcome(record, id_field):
    cfg = SourceConfig(
        type="jsonl", path="x", id_field=id_field, text_fields=["title", "body"], metadata_fields=["topic", "when"]
    )
    docs, dead, skipped = outcomes(record, cfg)
    for doc in docs:
        doc.text.encode("utf-8")
        doc.id.encode("utf-8")
        assert strict_json_loads(json.dumps(doc.metadata, ensure_ascii=False, allow_nan=False)) == doc.metadata
    for letter in dead + skipped:
        strict_json_loads(letter.to_json("run"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.dictionaries(st.sampled_from(["id", "title", "body", "topic", "when", "other"]), FIELD_VALUES, max_size=6),
        FIELD_VALUES,  # not a record at all
    ),
    st.sampled_from(["id", None]),
    st.booleans(),
)
def test_the_id_pass_finds_the_id_of_every_document_and_of_nothing_else(record, id_field, positioned):
    """The duplicate-id pass applies PrepareFn's rules without building the Document: the same id, or none."""
    cfg = SourceConfig(
        type="jsonl", path="x", id_field=id_field, text_fields=["title", "body"], metadata_fields=["topic", "when"]
    )
    if positioned and isinstance(record, dict):
        record = with_position(dict(record), "f.jsonl", 42)
    prepared = next(iter(PrepareFn(cfg).process(record)))
    expected = (prepared.id, prepared.position if cfg.deduplicate else None) if isinstance(prepared, Document) else None
    found = [pair for _, ids in IdAndPositionChunkFn(cfg).process([record]) for pair in ids.items()]
    assert found == ([] if expected is None else [(expected[0], (1, expected[1]))])
