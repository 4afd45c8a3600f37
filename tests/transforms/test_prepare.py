from __future__ import annotations

import apache_beam as beam
import pytest

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


@pytest.fixture(params=["streamed", "grouped"])
def _dedupe(request):
    """Both ways give the same result: ids found by a second read, documents streamed (the run's way), or
    the documents grouped by id."""

    def run(cfg):
        from support import collect, collected

        from neural_ingest.transforms.prepare import PrepareDocuments
        from neural_ingest.transforms.read import ReadRecords

        reread = ReadRecords(cfg) if request.param == "streamed" else None
        with beam.Pipeline("DirectRunner") as p:
            out = (p | ReadRecords(cfg))["records"] | PrepareDocuments(cfg, reread)
            out["documents"] | "d" >> collect("docs")
            out[SKIPPED] | "s" >> collect("skipped")
        return sorted((d.id, d.text) for d in collected("docs")), collected("skipped")

    return run


def test_duplicate_ids_keep_the_last_in_source_order_like_an_upsert(tmp_path, _dedupe):
    """A later line wins whatever its text: today the text sorting first won ("AAA" beat the genuine record)."""
    from support import write_jsonl

    write_jsonl(
        tmp_path / "a.jsonl", [{"id": "a", "text": "AAA early"}, {"id": "b", "text": "x"}, {"id": "a", "text": "zzz later"}]
    )
    write_jsonl(tmp_path / "b.jsonl", [{"id": "b", "text": "AAA in the later file"}])
    docs, skipped = _dedupe(SourceConfig(type="jsonl", path=str(tmp_path / "*.jsonl")))
    assert docs == [("a", "zzz later"), ("b", "AAA in the later file")]
    by_id = {s.doc_id: s for s in skipped}
    assert {(s.doc_id, s.record["text"]) for s in skipped} == {("a", "AAA early"), ("b", "x")}
    assert all(s.error_type == "duplicate_id" for s in skipped)
    assert "the last in source order" in by_id["a"].message and "as an upsert would" in by_id["a"].message
    assert f"byte 0 of {tmp_path / 'a.jsonl'}" in by_id["a"].message  # where the skipped one was
    assert "__neural_ingest_position__" not in by_id["a"].record  # the reader's bookkeeping stays internal


def test_duplicate_ids_keep_the_last_row_of_csv_and_parquet(tmp_path, _dedupe):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "d.csv").write_text("id,text\na,AAA first\nb,x\na,zzz last\n")
    docs, skipped = _dedupe(SourceConfig(type="csv", path=str(tmp_path / "d.csv")))
    assert docs == [("a", "zzz last"), ("b", "x")]
    assert "line 4 of" in skipped[0].message and "line 2 of" in skipped[0].message
    rows = (
        [{"id": "a", "text": "AAA first"}] + [{"id": f"n{i}", "text": "t"} for i in range(5)] + [{"id": "a", "text": "zzz last"}]
    )
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet", row_group_size=3)  # the duplicates in different row groups
    docs, skipped = _dedupe(SourceConfig(type="parquet", path=str(tmp_path / "d.parquet")))
    assert ("a", "zzz last") in docs and len(docs) == 6
    assert "row 6 of" in skipped[0].message and "row 0 of" in skipped[0].message


def test_duplicates_without_a_position_keep_one_deterministically():
    from support import collect, collected

    from neural_ingest.transforms.prepare import PrepareDocuments

    rows = [{"id": "a", "text": "second"}, {"id": "b", "text": "x"}, {"id": "a", "text": "first"}]
    for _ in range(2):
        with beam.Pipeline("DirectRunner") as p:
            out = p | beam.Create(rows) | PrepareDocuments(SourceConfig(type="jsonl", path="x"))  # no reader: no positions
            out["documents"] | "d" >> collect("docs")
        assert sorted((d.id, d.text) for d in collected("docs")) == [("a", "second"), ("b", "x")]


def test_content_hash_id_is_deterministic():
    a, _ = prepare({"text": "same text"}, id_field=None)
    b, _ = prepare({"text": "same text"}, id_field=None)
    c, _ = prepare({"text": "other text"}, id_field=None)
    assert a[0].id == b[0].id == content_id("same text") != c[0].id


def test_deduplication_groups_only_id_position_pairs_never_the_documents(tmp_path):
    """Memory that does not grow with the corpus on the local runner: the only shuffle under Prepare is
    the (id, position) pairs of the second, uncounted read; the documents stream past the duplicates."""
    from support import write_jsonl

    from neural_ingest.transforms.counters import UNCOUNTED
    from neural_ingest.transforms.prepare import PrepareDocuments
    from neural_ingest.transforms.read import ReadRecords

    write_jsonl(tmp_path / "a.jsonl", [{"id": "a", "text": "x"}])
    cfg = SourceConfig(type="jsonl", path=str(tmp_path / "a.jsonl"))
    p = beam.Pipeline("DirectRunner")
    _ = (p | "Read" >> ReadRecords(cfg))["records"] | "Prepare" >> PrepareDocuments(cfg, ReadRecords(cfg))
    grouped: list[tuple[str, str]] = []

    class Shuffles(beam.pipeline.PipelineVisitor):
        def visit_transform(self, node):
            if isinstance(node.transform, beam.GroupByKey) and node.full_label.startswith("Prepare/"):
                grouped.append((node.full_label, node.inputs[0].producer.full_label))

    p.visit(Shuffles())
    # One accumulator per id ((count, last position), combined before the shuffle), not a list of positions.
    assert [g for g, _ in grouped] == ["Prepare/DropDuplicateIds/CountAndLastPositionById/GroupByKey"]
    assert grouped[0][1].startswith(f"Prepare/{UNCOUNTED}/") and grouped[0][1].endswith("/IdAndPosition")
