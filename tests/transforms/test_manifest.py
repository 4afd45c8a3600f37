"""The stamps manifest (transforms/manifest.py): its encoding, the scan that skips known lines, and the read-back check."""
from __future__ import annotations

import apache_beam as beam
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from neural_ingest.config import SourceConfig
from neural_ingest.fingerprint import content_hash
from neural_ingest.transforms import counters, manifest
from neural_ingest.transforms.counters import DEAD_LETTER
from neural_ingest.transforms.manifest import partition
from neural_ingest.transforms.reuse import doc_hash
from neural_ingest.transforms.source_scan import FetchLinesFn, ScanJsonlFn
from neural_ingest.transforms.stamps_join import DUPLICATES, FETCH, KNOWN, LIVE, ROWS, SRC, JoinStampsFn, join_stamps

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


def _scan(path, known: manifest.Manifest) -> tuple[list, list]:
    """ScanJsonlFn over a whole file, with ``known`` as the live manifest: (parsed stamps, known lines as (partition,
    path, manifest rows, offsets))."""
    cfg = SourceConfig(type="jsonl", path=str(path))
    fn = ScanJsonlFn(cfg)
    fn.setup()
    fn.index = known
    fn.start_bundle()
    out = list(fn.process((str(path), 0, path.stat().st_size)))
    parsed = [s for part, (side, batch) in out if side == SRC for s in batch]
    seen = [(part, b[0], np.frombuffer(b[1], dtype=np.int64).tolist(), np.frombuffer(b[2], dtype=np.int64).tolist())
            for part, (side, b) in out if side == KNOWN]
    return parsed, seen


def test_a_known_line_is_not_parsed_and_a_changed_one_is(tmp_path, monkeypatch):
    from neural_ingest.transforms.prepare import PrepareFn

    path = tmp_path / "d.jsonl"
    same, changed = b'{"id": "a", "text": "kept as it was"}', b'{"id": "b", "text": "a new text"}'
    path.write_bytes(same + b"\n" + changed + b"\n")
    nums = np.array([(7 + r, 1, 1) for r in range(5)] + [(manifest.line_digest(same), 11, 12)], dtype=np.uint64)
    known = manifest.Manifest({partition("a"): (["x0", "x1", "x2", "x3", "x4", "a"], nums)})  # that line is row 5
    prepared: list = []
    real = PrepareFn.process
    monkeypatch.setattr(PrepareFn, "process", lambda self, r: prepared.append(r) or real(self, r))
    stamps, seen = _scan(path, known)
    assert [r["id"] for r in prepared] == ["b"]
    digest = manifest.short(doc_hash("a new text", {}))
    assert stamps == [("b", (str(path), len(same) + 1), digest, manifest.short(content_hash("a new text")),
                       manifest.line_digest(changed))]
    assert seen == [(partition("a"), str(path), [5], [0])]


_LIVE = st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(1, 3), st.integers(1, 3)), max_size=8,
                 unique_by=lambda r: r[0])


@given(_LIVE, st.lists(st.tuples(st.booleans(), st.integers(0, 7), st.sampled_from("abcdefghij"), st.integers(1, 3)),
                       max_size=12))
@settings(max_examples=200, deadline=None)
def test_the_join_from_known_lines_is_the_join_of_every_stamp(live_rows, lines):
    """However the source repeats, rewrites, drops or adds ids, the manifest's array path (known lines as row numbers)
    gives the same changes, duplicates, fetches, unchanged count and new manifest rows as joining every stamp."""
    ids = [r[0] for r in live_rows]
    nums = np.array([(100 + i, d, c) for i, (_, d, c) in enumerate(live_rows)], dtype=np.uint64).reshape(-1, 3)
    ref = manifest.ManifestRef(None, "locks", "live", "uuid-x")
    manifest._CACHE.clear()
    manifest._CACHE[("locks", "live", "uuid-x")] = manifest.Manifest({0: (ids, nums)})
    every, src, rows, offsets = [], [], [], []
    for n, (is_known, row, doc_id, d) in enumerate(lines):
        if is_known and row < len(ids):  # the very bytes of a live document's line
            rows.append(row)
            offsets.append(n * 10)
            every.append((ids[row], ("f", n * 10), int(nums[row, 1]), int(nums[row, 2]), int(nums[row, 0])))
        else:  # a parsed line: new, changed, or a copy of a live id with other bytes
            src.append((doc_id, ("f", n * 10), d, d, 500 + n))
            every.append(src[-1])
    batches = [(SRC, src), (KNOWN, ("f", np.array(rows, np.int64).tobytes(), np.array(offsets, np.int64).tobytes()))]

    def run(fn, item):
        got: dict = {"changes": [], FETCH: [], DUPLICATES: [], ROWS: [], "counted": []}
        real = counters.inc
        counters.inc = lambda name, n=1: got["counted"].append((name, n))  # type: ignore[assignment]
        try:
            for out in fn.process(item):
                if isinstance(out, beam.pvalue.TaggedOutput):
                    got[out.tag].append(out.value)
                else:  # the other copies of an id in any order (a GroupByKey's is arbitrary too)
                    got["changes"].append((out[0], out[1]._replace(others=tuple(sorted(out[1].others)))))
        finally:
            counters.inc = real  # type: ignore[assignment]
        blocks = [b for _, b in got.pop(ROWS)]
        got["rows"] = sorted((i, *n) for b in blocks for i, n in zip(b[0], np.asarray(b[1]).tolist()))
        return {k: sorted(v, key=repr) for k, v in got.items()}

    live = [(i, int(d), int(c), True) for i, (_, d, c) in zip(ids, nums.tolist())]
    expected_rows: list = []
    expected = list(join_stamps(every, live, True, expected_rows))
    got = run(JoinStampsFn(True, manifest=ref, rows=True), (0, batches))
    assert got["changes"] == sorted(((i, r[0]._replace(others=tuple(sorted(r[0].others)))) for w, (i, *r) in expected
                                     if w == "change"), key=repr)
    assert got["rows"] == sorted(expected_rows)
    old = run(JoinStampsFn(True, rows=True), (0, [(SRC, every), (LIVE, live)]))
    assert got == old


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
    from neural_ingest.transforms.source_scan import line_chunks, lines_of

    def block_lines(f, start, end):
        return [pair for offsets, chunk in line_chunks(f, start, end) for pair in zip(offsets, chunk)]

    path = tmp_path_factory.mktemp("blk") / "f.jsonl"
    path.write_bytes(eol.join(lines) + (eol if last_eol else b""))
    size = path.stat().st_size
    for start in range(0, max(size, 1), block):
        end = min(start + block, size)
        with open(path, "rb") as a, open(path, "rb") as b:
            assert list(block_lines(a, start, end)) == list(lines_of(b, start, end)), (start, end)


@given(st.lists(st.binary(max_size=40), max_size=30), st.data())
@settings(max_examples=100, deadline=None)
def test_lines_are_digested_and_looked_up_at_once_as_one_by_one(lines, data):
    from neural_ingest.transforms.source_scan import line_digests

    raws = line_digests(lines)
    assert raws.tolist() == [manifest.line_digest(line) for line in lines]
    known = data.draw(st.lists(st.sampled_from(lines), unique=True)) if lines else []
    nums = np.array([(manifest.line_digest(line), 1, 2) for line in known], dtype=np.uint64).reshape(-1, 3)
    index = manifest.Manifest({3: ([f"id{i}" for i in range(len(known))], nums)})
    codes, found = index.lookup(raws)
    for line, code, hit in zip(lines, codes.tolist(), found.tolist()):
        assert hit == (line in known)
        if hit:
            assert code == 3 << 32 | known.index(line)
