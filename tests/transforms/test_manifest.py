"""The stamps manifest (transforms/manifest.py): its encoding, the scan that skips known lines, and the read-back check."""
from __future__ import annotations

import apache_beam as beam
from hypothesis import given, settings
from hypothesis import strategies as st

from neural_ingest.config import SourceConfig
from neural_ingest.fingerprint import content_hash
from neural_ingest.transforms import manifest
from neural_ingest.transforms.counters import DEAD_LETTER
from neural_ingest.transforms.reuse import (
    SRC,
    FetchLinesFn,
    ScanJsonlFn,
    doc_hash,
    partition,
)

_IDS = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


@given(st.lists(st.tuples(_IDS, st.integers(0, 2**63 - 1), st.integers(0, 2**60 - 1), st.integers(0, 2**60 - 1)),
                max_size=30))
@settings(max_examples=50, deadline=None)
def test_a_part_round_trips_any_id_and_digest(rows):
    doc = manifest.encode_part("a", "a-1", 3, rows)
    ids, nums = manifest.decode_part(doc)
    assert list(zip(ids, *zip(*nums.tolist()))) == rows if rows else (ids, len(nums)) == ([], 0)


def test_digests_fit_beams_signed_int_coder():
    assert 0 < manifest.line_digest(b"x" * 100) < 2**63 and manifest.line_digest(b"") > 0
    assert manifest.short("f" * 64) < 2**63


def _scan(path, known: dict) -> list:
    """ScanJsonlFn over a whole file, with ``known`` as the live manifest's raw-line index."""
    cfg = SourceConfig(type="jsonl", path=str(path))
    fn = ScanJsonlFn(cfg)
    fn.setup()
    fn.known = known
    fn.start_bundle()
    out = list(fn.process((str(path), 0, path.stat().st_size)))
    return [s for part, (side, batch) in out if side == SRC for s in batch]


def test_a_known_line_is_not_parsed_and_a_changed_one_is(tmp_path, monkeypatch):
    from neural_ingest.transforms.prepare import PrepareFn

    path = tmp_path / "d.jsonl"
    same, changed = b'{"id": "a", "text": "kept as it was"}', b'{"id": "b", "text": "a new text"}'
    path.write_bytes(same + b"\n" + changed + b"\n")
    known = {manifest.line_digest(same): ("a", 11, 12, partition("a"))}  # what the live index's manifest says of that very line
    prepared: list = []
    real = PrepareFn.process
    monkeypatch.setattr(PrepareFn, "process", lambda self, r: prepared.append(r) or real(self, r))
    stamps = _scan(path, known)
    assert [r["id"] for r in prepared] == ["b"]
    digest = manifest.short(doc_hash("a new text", {}))
    assert stamps == [("a", (str(path), 0), 11, 12, manifest.line_digest(same)),
                      ("b", (str(path), len(same) + 1), digest, manifest.short(content_hash("a new text")),
                       manifest.line_digest(changed))]


def test_a_line_changed_under_the_run_is_a_source_changed_dead_letter(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b"}\n')
    classified = manifest.line_digest(b'{"id": "b", "text": "what the scan saw"}')
    out = list(FetchLinesFn().process(((str(path), 0), [(0, manifest.line_digest(b'{"id": "a"}')), (12, classified)])))
    assert out[0] == (str(path), 0, b'{"id": "a"}')
    assert isinstance(out[1], beam.pvalue.TaggedOutput) and out[1].tag == DEAD_LETTER
    assert (out[1].value.stage, out[1].value.error_type, out[1].value.record) == (
        "read", "source_changed", {"file": str(path), "line": b'{"id": "b"}'})
    assert len(out) == 2


@given(st.lists(st.sampled_from([b"{}", b'{"a": 1}', b"", b"  ", b"x" * 7, b"\r", b"a\rb"]), min_size=1, max_size=12),
       st.sampled_from([b"\n", b"\r\n"]), st.booleans(), st.integers(1, 9))
@settings(max_examples=60, deadline=None)
def test_a_range_read_whole_gives_the_lines_and_offsets_of_the_line_reader(tmp_path_factory, lines, eol, last_eol, block):
    from neural_ingest.transforms.reuse import block_lines, lines_of

    path = tmp_path_factory.mktemp("blk") / "f.jsonl"
    path.write_bytes(eol.join(lines) + (eol if last_eol else b""))
    size = path.stat().st_size
    for start in range(0, max(size, 1), block):
        end = min(start + block, size)
        with open(path, "rb") as a, open(path, "rb") as b:
            assert list(block_lines(a, start, end)) == list(lines_of(b, start, end)), (start, end)
