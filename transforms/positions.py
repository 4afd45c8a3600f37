"""Where each record was in the source (file, then byte offset / line / row), so that of several
records with one id the last one wins, as an upsert would, on every runner and every split.

The readers put ``(file, n)`` under :data:`POSITION` in each record; :class:`PrepareFn` takes it out
before anything else sees the record. JSONL is read by Beam's splittable text source, which numbers
no lines, so ``n`` is the line's byte offset in its file (in the decompressed stream for .gz); CSV:
the line number; Parquet: the row index in the file. Two small values per record, dropped once
duplicates are resolved.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import accumulate
from typing import Any

from apache_beam import coders, typehints
from apache_beam.io import iobase, textio

POSITION = "__neural_ingest_position__"
UNITS = {"jsonl": "byte", "csv": "line", "parquet": "row"}  # what ``n`` counts, per source type


def with_position(record: dict[str, Any], file: str, n: int) -> dict[str, Any]:
    record[POSITION] = (file, n)
    return record


def pop_position(record: Any) -> tuple[Any, tuple[str, int] | None]:
    """The record without its position (a copy: Beam inputs are not ours to change), and the position."""
    if isinstance(record, dict) and POSITION in record:
        record = dict(record)
        return record, record.pop(POSITION)
    return record, None


def describe(position: tuple[str, int] | None, source_type: str) -> str:
    if position is None:
        return "an unknown position"
    return f"{UNITS.get(source_type, 'position')} {position[1]} of {position[0]}"


class _ClaimSpy:
    """A range tracker that remembers the last position a reader claimed: the start of the record it
    is about to yield."""

    def __init__(self, tracker: iobase.RangeTracker):
        self._tracker = tracker
        self.last = -1

    def try_claim(self, position: Any) -> bool:
        ok: bool = self._tracker.try_claim(position)
        if ok:
            self.last = position
        return ok

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tracker, name)


# Beam's _TextSource methods are called by name here, not through super(): mypy's untyped-call exclusion
# (pyproject: untyped_calls_exclude) matches Beam's names, and a super() call has none.
class _TextSourceWithOffsets(textio._TextSource):
    def read_records(self, file_name: str, range_tracker: iobase.RangeTracker) -> Iterable[tuple[str, int, Any]]:
        spy = _ClaimSpy(range_tracker)
        for record in textio._TextSource.read_records(self, file_name, spy):
            yield file_name, spy.last, record

    def output_type_hint(self) -> Any:
        return typehints.Tuple[str, int, textio._TextSource.output_type_hint(self)]


class ReadLinesWithOffsets(textio.ReadFromText):
    """Like ReadFromTextWithFilename (splittable), yielding ``(file, byte offset, line)``."""

    _source_class = _TextSourceWithOffsets


CHUNK_LINES = 1000  # lines per element of ReadLineChunksWithOffsets


BLOCK_BYTES = 1 << 20  # bytes read at once by the chunked reader's fast path


class _TextSourceChunks(textio._TextSource):
    def read_records(self, file_name: str, range_tracker: iobase.RangeTracker) -> Iterable[tuple[str, list[tuple[int, Any]]]]:
        """``(file, [(offset, line), ...])``, ``CHUNK_LINES`` lines an element: the lines and offsets of Beam's
        reader (lines end at ``\n`` or ``\r\n``, a last line without one counts, an empty one does not; a
        split's lines are those that start in it). JSONL's plain case (bytes, no header, no custom delimiter)
        is read in 1 MiB blocks and split at newlines at once (a line is still claimed before it is handed on);
        anything else goes through Beam's own reader."""
        if (
            self._delimiter is not None
            or self._escapechar is not None
            or self._skip_header_lines
            or not self._strip_trailing_newlines
            or not isinstance(self._coder, coders.BytesCoder)
        ):
            yield from self._read_by_line(file_name, range_tracker)
            return
        start = range_tracker.start_position()
        next_start = start

        def unclaimed(stop_position: int) -> object:  # 0, or Beam's SPLIT_POINTS_UNKNOWN sentinel (an object())
            return 0 if stop_position <= next_start else iobase.RangeTracker.SPLIT_POINTS_UNKNOWN

        range_tracker.set_split_points_unclaimed_callback(unclaimed)
        with textio._TextSource.open_file(self, file_name) as f:
            pos = 0
            data = b""
            if start > 0:  # the line that holds byte start-1 belongs to the split before: skip past its end
                f.seek(start - 1)
                pos = start - 1
                while True:
                    block = f.read(BLOCK_BYTES)
                    if not block:
                        return
                    i = block.find(b"\n")
                    if i >= 0:
                        pos += i + 1
                        f.seek(pos)  # ``data`` below is at most one line: the rest of this block is read again
                        break
                    pos += len(block)
            chunk: list[tuple[int, Any]] = []  # lines read, not yet claimed
            eof = False
            while not eof:
                block = f.read(BLOCK_BYTES)
                eof = not block
                carriage_returns = b"\r" in block or b"\r" in data
                lines = block.split(b"\n")
                lines[0] = data + lines[0]  # the line begun in the block before (not the whole block copied again)
                data = lines.pop()  # no newline after it yet: it waits for the next block
                starts = list(accumulate([len(line) + 1 for line in lines], initial=pos))
                pos = starts.pop()  # where ``data`` starts
                if carriage_returns:
                    lines = [line[:-1] if line[-1:] == b"\r" else line for line in lines]
                chunk.extend(zip(starts, lines))
                while len(chunk) >= CHUNK_LINES:
                    piece, chunk = chunk[:CHUNK_LINES], chunk[CHUNK_LINES:]
                    claimed = self._claim(range_tracker, piece)
                    if claimed:
                        yield file_name, claimed
                    if len(claimed) < len(piece):
                        return  # the rest starts past this split's end
                    next_start = chunk[0][0] if chunk else pos
            if data:  # the last line, without a newline after it (as Beam's reader: its "\r" kept)
                chunk.append((pos, data))
            claimed = self._claim(range_tracker, chunk) if chunk else []
            if claimed:
                yield file_name, claimed

    @staticmethod
    def _claim(range_tracker: iobase.RangeTracker, chunk: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
        """The chunk's lines this split emits: each claimed as Beam's reader claims it, up to the first
        refused (it starts past the split's end, or a dynamic split took it)."""
        claim: Callable[[int], bool] = range_tracker.try_claim
        for i, (offset, _line) in enumerate(chunk):
            if not claim(offset):
                return chunk[:i]
        return chunk

    def _read_by_line(self, file_name: str, range_tracker: iobase.RangeTracker) -> Iterable[tuple[str, list[tuple[int, Any]]]]:
        spy = _ClaimSpy(range_tracker)
        chunk: list[tuple[int, Any]] = []
        for record in textio._TextSource.read_records(self, file_name, spy):
            chunk.append((spy.last, record))
            if len(chunk) >= CHUNK_LINES:
                yield file_name, chunk
                chunk = []
        if chunk:
            yield file_name, chunk

    def output_type_hint(self) -> Any:
        return typehints.Tuple[str, typehints.List[typehints.Tuple[int, textio._TextSource.output_type_hint(self)]]]


class ReadLineChunksWithOffsets(textio.ReadFromText):
    """``(file, [(byte offset, line), ...])``: ReadLinesWithOffsets' lines, up to ``CHUNK_LINES`` an element,
    so what follows handles lists, not one Beam element a line."""

    _source_class = _TextSourceChunks
