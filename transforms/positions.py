"""Where each record was in the source (file, then byte offset / line / row), so that of several
records with one id the last one wins, as an upsert would, on every runner and every split.

The readers put ``(file, n)`` under :data:`POSITION` in each record; :class:`PrepareFn` takes it out
before anything else sees the record. JSONL is read by Beam's splittable text source, which numbers
no lines, so ``n`` is the line's byte offset in its file (in the decompressed stream for .gz); CSV:
the line number; Parquet: the row index in the file. Two small values per record, dropped once
duplicates are resolved.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from apache_beam import typehints
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
        ok = self._tracker.try_claim(position)
        if ok:
            self.last = position
        return ok

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tracker, name)


class _TextSourceWithOffsets(textio._TextSource):
    def read_records(self, file_name: str, range_tracker: iobase.RangeTracker) -> Iterable[tuple[str, int, Any]]:
        spy = _ClaimSpy(range_tracker)
        for record in super().read_records(file_name, spy):
            yield file_name, spy.last, record

    def output_type_hint(self) -> Any:
        return typehints.Tuple[str, int, super().output_type_hint()]


class ReadLinesWithOffsets(textio.ReadFromText):
    """Like ReadFromTextWithFilename (splittable), yielding ``(file, byte offset, line)``."""

    _source_class = _TextSourceWithOffsets


CHUNK_LINES = 1000  # lines per element of ReadLineChunksWithOffsets


class _TextSourceChunks(textio._TextSource):
    def read_records(self, file_name: str, range_tracker: iobase.RangeTracker) -> Iterable[tuple[str, list[tuple[int, Any]]]]:
        """Each line is claimed as Beam's reader claims it (splits stay exact); the claimed lines are handed
        on ``CHUNK_LINES`` at a time."""
        spy = _ClaimSpy(range_tracker)
        chunk: list[tuple[int, Any]] = []
        for record in super().read_records(file_name, spy):
            chunk.append((spy.last, record))
            if len(chunk) >= CHUNK_LINES:
                yield file_name, chunk
                chunk = []
        if chunk:
            yield file_name, chunk

    def output_type_hint(self) -> Any:
        return typehints.Tuple[str, typehints.List[typehints.Tuple[int, super().output_type_hint()]]]


class ReadLineChunksWithOffsets(textio.ReadFromText):
    """``(file, [(byte offset, line), ...])``: ReadLinesWithOffsets' lines, up to ``CHUNK_LINES`` an element,
    so what follows handles lists, not one Beam element a line."""

    _source_class = _TextSourceChunks
