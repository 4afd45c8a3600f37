"""The chunked JSONL reader gives exactly Beam's lines and byte offsets, whatever the line ends and splits."""
from __future__ import annotations

import gzip
import itertools

from apache_beam import coders
from apache_beam.io.range_trackers import OffsetRangeTracker
from hypothesis import given, settings
from hypothesis import strategies as st

from neural_ingest.transforms import positions

pieces = st.lists(st.sampled_from([b"\n", b"\r\n", b"\r", b"x", b'{"id": 1}', b"\xc3\xa9"]), max_size=60).map(b"".join)


def _lines(source_class, path: str, cuts: list[int]) -> list[tuple[int, bytes]]:
    src = source_class(path, 1, "auto", True, coders.BytesCoder())
    out: list[tuple[int, bytes]] = []
    for a, b in itertools.pairwise(cuts):
        for rec in src.read_records(path, OffsetRangeTracker(a, b)):
            out += [(rec[1], rec[2])] if len(rec) == 3 else rec[1]
    return out


@settings(max_examples=150, deadline=None)
@given(data=pieces, cut_points=st.lists(st.integers(0, 400), max_size=5), chunk=st.integers(1, 4), block=st.integers(1, 9))
def test_chunked_reader_matches_beams_lines_and_offsets(tmp_path_factory, data, cut_points, chunk, block):
    path = str(tmp_path_factory.mktemp("r") / "a.jsonl")
    with open(path, "wb") as f:
        f.write(data)
    cuts = sorted({0, len(data), *(c for c in cut_points if c <= len(data))})
    old = positions.CHUNK_LINES, positions.BLOCK_BYTES
    positions.CHUNK_LINES, positions.BLOCK_BYTES = chunk, block  # small chunks and blocks: lines cross both
    try:
        got = _lines(positions._TextSourceChunks, path, cuts)
    finally:
        positions.CHUNK_LINES, positions.BLOCK_BYTES = old
    assert got == _lines(positions._TextSourceWithOffsets, path, cuts)


def test_chunked_reader_reads_gzip_as_beam_does(tmp_path):
    data = b'{"id": 1}\r\n\n{"id": 2}\n\r{"id": 3}'
    path = str(tmp_path / "a.jsonl.gz")
    with open(path, "wb") as f:
        f.write(gzip.compress(data))
    whole = [0, OffsetRangeTracker.OFFSET_INFINITY]
    assert _lines(positions._TextSourceChunks, path, whole) == _lines(positions._TextSourceWithOffsets, path, whole)
    assert [line for _, line in _lines(positions._TextSourceChunks, path, whole)] == [
        b'{"id": 1}',
        b"",
        b'{"id": 2}',
        b'\r{"id": 3}',
    ]


def test_a_split_in_the_middle_of_a_block_reads_every_line_after_it_once(tmp_path):
    """A split starting mid-file skips the line it starts in; the block read to find that line's end holds many
    more lines, which are all read (each once), whatever the block size."""
    data = b"".join(b'{"id": %d}%s' % (i, b"\r\n" if i % 3 else b"\n") for i in range(40))
    path = str(tmp_path / "a.jsonl")
    with open(path, "wb") as f:
        f.write(data)
    for cut in range(1, len(data)):
        cuts = [0, cut, len(data)]
        assert _lines(positions._TextSourceChunks, path, cuts) == _lines(positions._TextSourceWithOffsets, path, cuts)
