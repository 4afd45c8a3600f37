"""The clone path (transforms/clone_night.py, stamps_join.py, source_scan.py): the source is read once down to
small (id, position, digest) stamps in batches per partition, joined with the live index's stamps; each id gets the
action its last source copy and the live stamp call for, and only the records to write are read back."""
from __future__ import annotations

import gzip
import io

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from neural_ingest.fingerprint import content_hash
from neural_ingest.records import Document
from neural_ingest.transforms.manifest import partition
from neural_ingest.transforms.positions import ReadLinesWithOffsets
from neural_ingest.transforms.source_scan import FetchLinesFn, jsonl_ranges, lines_of
from neural_ingest.transforms.stamps_join import (
    CHANGED,
    DUPLICATES,
    FETCH,
    GONE,
    LIVE,
    NEW,
    SRC,
    Change,
    JoinStampsFn,
    doc_digest,
    join_stamps,
)


def _src(doc: Document, position) -> tuple:
    return doc.id, position, doc_digest(doc)


def _live(doc: Document, same_model: bool = True) -> tuple:
    return doc.id, doc_digest(doc), content_hash(doc.text)[:16], same_model


OLD = Document(id="a", text="old text", metadata={"topic": "x"})
CHANGED_A = Document(id="a", text="new text", metadata={"topic": "x"})
SAME = Document(id="u", text="same", metadata={"topic": "x"})
META_OLD, META_NEW = Document(id="m", text="t", metadata={"topic": "x"}), Document(id="m", text="t", metadata={"topic": "y"})
OTHER_MODEL = Document(id="o", text="o", metadata={})
NEW_DOC, GONE_DOC = Document(id="n", text="n", metadata={}), Document(id="g", text="g", metadata={})
SOURCE = [_src(OLD, ("f", 10)), _src(CHANGED_A, ("f", 90)), _src(SAME, ("f", 20)), _src(META_NEW, ("f", 30)),
          _src(OTHER_MODEL, ("f", 40)), _src(NEW_DOC, ("f", 50))]
LIVE_STAMPS = [_live(OLD), _live(SAME), _live(META_OLD), _live(OTHER_MODEL, same_model=False), _live(GONE_DOC)]
EXPECTED = {
    "a": ("change", Change(CHANGED, content_hash("old text")[:16], ("f", 90), (("f", 10),))),  # the later copy decides
    "u": ("unchanged", (("f", 20), ())),
    "m": ("change", Change(CHANGED, content_hash("t")[:16], ("f", 30))),  # same text: its stored vectors are reused
    "o": ("change", Change(CHANGED, None, ("f", 40))),  # another model's vectors: encoded
    "n": ("change", Change(NEW, None, ("f", 50))),
    "g": ("change", Change(GONE)),
}


def test_each_id_gets_the_action_of_its_last_source_copy_against_the_live_stamp():
    got = {
        doc_id: (what, rest[0] if what == "change" else tuple(rest)) for what, (doc_id, *rest) in join_stamps(SOURCE, LIVE_STAMPS)
    }
    assert got == EXPECTED


@given(st.permutations(SOURCE))
@settings(max_examples=30, deadline=None)
def test_the_last_copy_wins_whatever_order_the_records_come_in(order):
    got = {
        doc_id: (what, rest[0] if what == "change" else tuple(rest)) for what, (doc_id, *rest) in join_stamps(order, LIVE_STAMPS)
    }
    assert got == EXPECTED


def test_the_join_in_a_pipeline_counts_unchanged_and_lists_what_to_write_read_back_and_deduplicate():
    def batches(side, stamps):
        return [(partition(s[0]), (side, [s])) for s in stamps]

    with TestPipeline() as p:
        out = (p | beam.Create(batches(SRC, SOURCE) + batches(LIVE, LIVE_STAMPS)) | beam.GroupByKey()
               | beam.ParDo(JoinStampsFn(dedupe=True)).with_outputs(FETCH, DUPLICATES, main="changes"))
        assert_that(out.changes, equal_to([(k, v[1]) for k, v in EXPECTED.items() if v[0] == "change"]), label="changes")
        assert_that(
            out[FETCH], equal_to([("a", ("f", 10))]), label="fetch"
        )  # the earlier copy: read back to be listed as skipped
        assert_that(out[DUPLICATES], equal_to([("a", (2, ("f", 90)))]), label="duplicates")


def test_an_unchanged_duplicate_reads_back_only_its_skipped_copies_and_without_dedupe_nothing():
    src = [_src(SAME, ("f", 1)), _src(SAME, ("f", 2)), _src(SAME, ("f", 3))]
    assert list(join_stamps(src, [_live(SAME)])) == [("unchanged", ("u", ("f", 3), (("f", 1), ("f", 2))))]
    with TestPipeline() as p:
        items = [(partition("u"), (SRC, src)), (partition("u"), (LIVE, [_live(SAME)]))]
        out = p | beam.Create(items) | beam.GroupByKey() | beam.ParDo(JoinStampsFn(dedupe=False)).with_outputs(
            FETCH, DUPLICATES, main="changes")
        assert_that(out.changes, equal_to([]), label="changes")
        assert_that(out[FETCH], equal_to([]), label="fetch")


def _offsets_beam(path: str) -> list[tuple[int, bytes]]:
    with TestPipeline() as p:
        got = p | ReadLinesWithOffsets(path, coder=beam.coders.BytesCoder()) | beam.Map(lambda t: (t[1], t[2]))
        assert_that(got, equal_to(_offsets_ours(path)))
    return _offsets_ours(path)


def _offsets_ours(path: str, block: int | None = None) -> list[tuple[int, bytes]]:
    import os

    from apache_beam.io.filesystems import FileSystems

    size = os.path.getsize(path)
    ranges = [(s, min(s + block, size)) for s in range(0, size, block)] if block else [(0, size)]
    out = []
    for start, end in ranges:
        with FileSystems.open(path) as f:
            out += list(lines_of(f, start, end))
    return out


@given(st.lists(st.sampled_from([b"{}", b'{"a": 1}', b"", b"  ", b"x" * 7, b"\r"]), min_size=1, max_size=12),
       st.sampled_from([b"\n", b"\r\n"]), st.booleans(), st.integers(1, 9))
@settings(max_examples=40, deadline=None)
def test_scan_ranges_see_each_line_once_at_the_offsets_beams_text_source_gives(tmp_path_factory, lines, eol, last_eol, block):
    path = tmp_path_factory.mktemp("scan") / "f.jsonl"
    path.write_bytes(eol.join(lines) + (eol if last_eol else b""))
    whole = _offsets_ours(str(path))
    assert _offsets_ours(str(path), block) == whole  # any split: each line once, in its range
    fetched = list(FetchLinesFn().process(((str(path), 0), [o for o, _ in whole])))
    assert [(o, line) for _, o, line in fetched] == sorted(set(whole))  # read back by offset: the same lines


def test_scan_offsets_match_readlineswithoffsets_also_compressed(tmp_path):
    body = b'{"id": "a"}\n\n{"id": "b"}\r\n{"id": "c"}'
    plain = tmp_path / "p.jsonl"
    plain.write_bytes(body)
    packed = tmp_path / "c.jsonl.gz"
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as g:
        g.write(body)
    packed.write_bytes(buf.getvalue())
    assert _offsets_beam(str(plain)) == [(0, b'{"id": "a"}'), (12, b""), (13, b'{"id": "b"}'), (26, b'{"id": "c"}')]
    assert jsonl_ranges(str(packed), 10) == [(str(packed), 0, float("inf"))]
    assert list(FetchLinesFn().process(((str(packed), 0), [26, 13]))) == [
        (str(packed), 13, b'{"id": "b"}'),
        (str(packed), 26, b'{"id": "c"}'),
    ]


def test_a_live_slice_that_cannot_be_read_fails_the_scan_in_the_dofns_own_thread(tmp_path, opensearch_url):
    """The live stamps are read by a thread of ScanJsonlFn while it scans; a read that fails is raised by the DoFn
    (the run fails, the alias stays), never lost with the thread."""
    import pytest
    from opensearchpy.exceptions import TransportError

    from neural_ingest.config import OpenSearchSourceConfig, SourceConfig
    from neural_ingest.transforms.read_opensearch import SliceSpec, SourceReadError
    from neural_ingest.transforms.source_scan import ScanJsonlFn

    src = tmp_path / "s.jsonl"
    src.write_text('{"id": "a", "title": "t", "body": "b"}\n')
    cfg = SourceConfig(type="jsonl", path=str(src), id_field="id", text_fields=["title", "body"])
    live = OpenSearchSourceConfig(type="opensearch", hosts=[opensearch_url], index="no-such-index", text_fields=["text"])
    fn = ScanJsonlFn(cfg, live, "m")
    fn.setup()
    fn.start_bundle()
    list(fn.process(SliceSpec("no-such-index", "not-a-pit-id", 0, 1)))
    out = list(fn.process((str(src), 0, src.stat().st_size)))
    assert [(part, side, [s[0] for s in batch]) for part, (side, batch) in out] == [(partition("a"), SRC, ["a"])]
    with pytest.raises((SourceReadError, TransportError)):
        list(fn.finish_bundle())


def test_live_stamps_are_read_in_big_pages_and_parallel_slices():
    """The stamps read is a few digests a hit: it gets pages of 2,000 and two slices (threads) where the vector
    reader has 200 in one, and never less than a configured page size or slice count."""
    from neural_ingest.config import OpenSearchSourceConfig
    from neural_ingest.transforms.source_scan import stamps_reader

    base = {"type": "opensearch", "hosts": ["http://x:9200"], "index": "live", "text_fields": ["text"]}
    small = stamps_reader(OpenSearchSourceConfig(**base, page_size=200))
    assert (small.page_size, small.slices) == (2000, 2)
    big = stamps_reader(OpenSearchSourceConfig(**base, page_size=5000, slices=4))
    assert (big.page_size, big.slices) == (5000, 4)
