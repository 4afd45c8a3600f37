from __future__ import annotations

import apache_beam as beam

from neural_ingest.config import SourceConfig
from neural_ingest.records import Document, content_id
from neural_ingest.transforms.counters import DEAD_LETTER, SKIPPED
from neural_ingest.transforms.prepare import PrepareFn


def prepare(record, **cfg):
    fn = PrepareFn(SourceConfig(type="jsonl", path="x", **cfg))
    out = list(fn.process(record))
    docs = [o for o in out if isinstance(o, Document)]
    dead = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == DEAD_LETTER]
    skipped = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == SKIPPED]
    prepare.skipped = skipped
    return docs, dead


def test_joins_text_fields_and_carries_metadata():
    docs, dead = prepare(
        {"id": 7, "title": "T", "body": "B", "topic": "x", "other": 1},
        text_fields=["title", "body"],
        metadata_fields=["topic", "missing"],
    )
    assert dead == []
    assert (docs[0].id, docs[0].text, docs[0].metadata) == ("7", "T\n\nB", {"topic": "x"})


def test_missing_id_and_missing_text_are_dead_letters():
    _, dead = prepare({"text": "hello"})
    assert dead[0].error_type == "missing_id"
    _, dead = prepare({"id": "1", "body": "no text field"})
    assert dead[0].error_type == "missing_text"
    _, dead = prepare({"id": "1", "text": {"nested": True}})
    assert dead[0].error_type == "invalid_text"


def test_whitespace_text_is_skipped_not_dead_lettered():
    docs, dead = prepare({"id": "1", "text": "  \n\t "})
    assert docs == [] and dead == []
    assert [(s.error_type, s.doc_id) for s in prepare.skipped] == [("empty_text", "1")]


def test_duplicate_ids_keep_one_deterministically_and_list_the_rest(tmp_path):
    from neural_ingest.config import SourceConfig
    from neural_ingest.transforms.prepare import PrepareDocuments
    from support import collect, collected

    rows = [{"id": "a", "text": "second"}, {"id": "b", "text": "x"}, {"id": "a", "text": "first"}]
    with beam.Pipeline("DirectRunner") as p:
        out = p | beam.Create(rows) | PrepareDocuments(SourceConfig(type="jsonl", path="x"))
        out["documents"] | "d" >> collect("docs")
        out[SKIPPED] | "s" >> collect("skipped")
    docs = sorted((d.id, d.text) for d in collected("docs"))
    assert docs == [("a", "first"), ("b", "x")]
    skipped = collected("skipped")
    assert [(s.error_type, s.doc_id, s.record["text"]) for s in skipped] == [("duplicate_id", "a", "second")]


def test_content_hash_id_is_deterministic():
    a, _ = prepare({"text": "same text"}, id_field=None)
    b, _ = prepare({"text": "same text"}, id_field=None)
    c, _ = prepare({"text": "other text"}, id_field=None)
    assert a[0].id == b[0].id == content_id("same text") != c[0].id
