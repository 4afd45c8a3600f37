"""The scan of a night's source: JSONL read in byte ranges, each line digested, the lines the live manifest knows
not parsed, the rest parsed and prepared down to their stamps; and the read-back of the lines to write, by offset.
"""
from __future__ import annotations

import hashlib
import math
import queue
import threading
from collections.abc import Iterable
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import apache_beam as beam
import numpy as np

from neural_ingest.config import OpenSearchSourceConfig, SourceConfig
from neural_ingest.fingerprint import content_hash
from neural_ingest.records import DeadLetter, Document
from neural_ingest.transforms import counters
from neural_ingest.transforms.manifest import (
    NO_MANIFEST,
    ManifestRef,
    line_digest,
    partition,
    short,
)
from neural_ingest.transforms.reuse import STAMP_FIELD
from neural_ingest.transforms.stamps_join import BATCH, KNOWN, SRC, SourceStamp, doc_digest, live_stamps

if TYPE_CHECKING:
    from neural_ingest.transforms.read_opensearch import SliceSpec

BLOCK = 64 << 20  # JSONL is scanned in byte ranges of this size (a compressed file whole), read back in the same blocks


def _strip_eol(line: bytes) -> bytes:
    """As Beam's text source splits lines: on \\n, with a \\r before it dropped too."""
    if line.endswith(b"\n"):
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
    return line


def _open(path: str) -> Any:
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.open(path)  # compression from the name, as ReadFromText's AUTO: positions are in the decompressed stream


def lines_of(f: Any, start: int, end: float) -> Iterable[tuple[int, bytes]]:
    """(byte offset, line) of each line that starts in [start, end) of an open file: a line belongs to the range
    its first byte is in (the rule of Beam's text source, so the offsets are the ones ReadLinesWithOffsets gives)."""
    pos = 0
    if start > 0:
        f.seek(start - 1)
        pos = start - 1 + len(f.readline())  # the rest of the line that began before the range
    while pos < end:
        line = f.readline()
        if not line:
            return
        yield pos, _strip_eol(line)
        pos += len(line)


_CHUNK_LINES = 20_000  # lines digested and looked up at once (and between two looks at the live stamps read meanwhile)


def line_chunks(f: Any, start: int, end: float) -> Iterable[tuple[list[int], list[bytes]]]:
    """The (offsets, lines) of lines_of in lists of up to _CHUNK_LINES: what the scan digests and looks up at once.
    A seekable (uncompressed) file's range is read whole and split at once, the offsets summed from the lengths (what
    a night spends on its unchanged lines is this and their digests); a compressed one is read line by line."""
    if end == math.inf:
        offsets: list[int] = []
        lines: list[bytes] = []
        for offset, line in lines_of(f, start, end):
            offsets.append(offset)
            lines.append(line)
            if len(lines) >= _CHUNK_LINES:
                yield offsets, lines
                offsets, lines = [], []
        if lines:
            yield offsets, lines
        return
    pos = 0
    if start > 0:
        f.seek(start - 1)
        pos = start - 1 + len(f.readline())
    else:
        f.seek(0)
    if pos >= end:
        return
    data = f.read(int(end) - pos)
    lines = data.split(b"\n")
    tail = f.readline() if lines[-1] else b""  # the last line starts in the range: all of it
    if tail:
        lines[-1] += tail  # added to that line, not to the whole range (a copy of one line, not of the block)
        if tail.endswith(b"\n"):
            lines[-1] = lines[-1][:-1]
            lines.append(b"")
    last = lines.pop()  # after the last \n: b"", or a last line with no line break (its \r is kept, as _strip_eol does)
    offsets = list(accumulate([len(line) + 1 for line in lines], initial=pos))
    after = offsets.pop()
    if b"\r" in data or b"\r" in tail:
        lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    if last:
        offsets.append(after)
        lines.append(last)
    for i in range(0, len(lines), _CHUNK_LINES):
        yield offsets[i:i + _CHUNK_LINES], lines[i:i + _CHUNK_LINES]


def line_digests(lines: list[bytes]) -> np.ndarray:
    """manifest.line_digest of each line, as one uint64 array (the shift and the 0 -> 1 rule done at once)."""
    blake2b = hashlib.blake2b
    raw = np.frombuffer(b"".join([blake2b(line, digest_size=8).digest() for line in lines]), dtype=">u8").astype(np.uint64)
    raw >>= np.uint64(1)
    raw[raw == 0] = 1
    return raw


def jsonl_ranges(path: str, size: int) -> list[tuple[str, int, float]]:
    """(path, start, end) blocks of a JSONL file; a compressed one is one range (it cannot be split)."""
    from apache_beam.io.filesystem import CompressionTypes

    if CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED:
        return [(path, 0, math.inf)]
    return [(path, s, min(s + BLOCK, size)) for s in range(0, max(size, 1), BLOCK)]


class ScanJsonlFn(beam.DoFn):
    """(path, start, end) -> the records of that range, read and prepared once, as batches (partition, (SRC,
    [(id, (path, byte offset), doc digest)])): the run's one full pass over the source (its ``read``, dead
    letters and skips count; the documents themselves go no further). ParseJsonLine and PrepareFn's own rules.

    A SliceSpec of the live index (``live``) is read meanwhile by a thread of this DoFn, its pages down to LIVE
    batches (and DONE when the slice is read): OpenSearch's work on the stamps overlaps the parsing here
    instead of running as a stage of its own before or after it. Everything is emitted from the DoFn's own
    thread: during the scan, and what is left in finish_bundle."""

    def __init__(self, cfg: SourceConfig, live: OpenSearchSourceConfig | None = None, model_hash: str = "",
                 manifest: ManifestRef | None = None):
        self.cfg, self.live, self.model_hash, self.manifest = cfg, live, model_hash, manifest

    def setup(self) -> None:
        from neural_ingest.transforms.manifest import load
        from neural_ingest.transforms.prepare import PrepareFn
        from neural_ingest.transforms.read import ParseJsonLine

        self.parse, self.prepare = ParseJsonLine(self.cfg.encoding), PrepareFn(self.cfg)
        # raw-line digest -> where its manifest row is (partition << 32 | row): such a line is not parsed
        self.index = load(self.manifest) if self.manifest is not None else NO_MANIFEST

    def start_bundle(self) -> None:
        self.parse.start_bundle()
        self.prepare.start_bundle()
        self._readers: list[_StampsReader] = []
        self._pages: queue.Queue[Any] = queue.Queue(maxsize=4096)  # LIVE batches, _END, or a reader's exception

    def finish_bundle(self) -> Iterable[Any]:
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.windowed_value import WindowedValue

        self.parse.finish_bundle()
        self.prepare.finish_bundle()
        for out in self._drain(wait=True):
            if isinstance(out, beam.pvalue.TaggedOutput):
                yield beam.pvalue.TaggedOutput(out.tag, WindowedValue(out.value, 0, (GlobalWindow(),)))
            else:
                yield WindowedValue(out, 0, (GlobalWindow(),))

    def _drain(self, wait: bool = False) -> Iterable[Any]:
        """What the readers put in the queue so far; with ``wait``, until every reader is done."""
        while True:
            try:
                item = self._pages.get(block=wait and any(r.running for r in self._readers), timeout=1.0)
            except queue.Empty:
                if wait and any(r.running for r in self._readers):
                    continue
                return
            if isinstance(item, BaseException):  # a slice that cannot be read fails the run, as the reader would
                raise item
            if item is _END:
                continue
            yield item

    def process(self, item: Any) -> Iterable[Any]:
        from neural_ingest.transforms.read_opensearch import SliceSpec

        if isinstance(item, SliceSpec):
            if self.live is None:  # _ScanJsonl sends slices only with a live index to read
                raise ValueError("a slice of the live index to scan, but no live index configured")
            reader = _StampsReader(self.live, item, self.model_hash, self._pages)
            self._readers.append(reader)
            reader.start()
            return
        path, start, end = item
        parts: dict[int, list[SourceStamp]] = {}
        known_rows: list[np.ndarray] = []  # manifest codes (partition << 32 | row) and byte offsets of the known lines
        known_offsets: list[np.ndarray] = []
        with _open(path) as f:
            for offsets, lines in line_chunks(f, start, end):
                raws = line_digests(lines)
                codes, found = self.index.lookup(raws)  # the very bytes of a live document's line: its row, no parsing
                if found.any():
                    known_rows.append(codes[found])
                    known_offsets.append(np.asarray(offsets, dtype=np.int64)[found])
                for i in np.flatnonzero(~found).tolist():
                    yield from self._parsed(path, offsets[i], lines[i], int(raws[i]), parts)
                if self._readers:
                    yield from self._drain()
        codes = np.concatenate(known_rows) if known_rows else np.zeros(0, dtype=np.int64)
        self.parse.count("read", len(codes))
        for part, batch in parts.items():
            yield part, (SRC, batch)
        if len(codes):
            offsets_all = np.concatenate(known_offsets)
            part_of = codes >> 32
            order = np.argsort(part_of, kind="stable")
            bounds = np.flatnonzero(np.diff(part_of[order])) + 1
            for group in np.split(order, bounds):
                rows = (codes[group] & 0xFFFFFFFF).astype(np.int64)
                yield int(part_of[group[0]]), (KNOWN, (path, rows.tobytes(), offsets_all[group].tobytes()))
        yield from self._drain()

    def _parsed(self, path: str, offset: int, line: bytes, raw: int, parts: dict[int, list[SourceStamp]]) -> Iterable[Any]:
        """A line the manifest does not know: parsed and prepared, down to its stamp (batched per partition)."""
        for record in self.parse.process((path, offset, line)):
            if isinstance(record, beam.pvalue.TaggedOutput):
                yield record
                continue
            for out in self.prepare.process(record):
                if not isinstance(out, Document):
                    yield out
                    continue
                part = partition(out.id)
                batch = parts.setdefault(part, [])
                batch.append((out.id, (path, offset), doc_digest(out), short(content_hash(out.text)), raw))
                if len(batch) >= BATCH:
                    yield part, (SRC, parts.pop(part))


_END = object()


class _StampsReader(threading.Thread):
    """Reads one slice of the live index (ReadSliceFn, stamps only) into a queue: LIVE batches, then DONE."""

    def __init__(self, live: OpenSearchSourceConfig, spec: SliceSpec, model_hash: str, out: queue.Queue[Any]):
        super().__init__(daemon=True, name=f"live-stamps-{spec.slice_id}")
        self.live, self.spec, self.model_hash, self.out = live, spec, model_hash, out
        self.running = True

    def run(self) -> None:
        from neural_ingest.transforms.read_opensearch import ReadSliceFn

        fn = ReadSliceFn(self.live, [STAMP_FIELD], count_read=False, page_fn=live_stamps(self.model_hash))
        try:
            fn.setup()
            for out in fn.process(self.spec):
                self.out.put(out)
        except BaseException as e:  # noqa: BLE001 - handed to the DoFn's thread, which raises it
            self.out.put(e)
        finally:
            self.running = False
            self.out.put(_END)
            fn.teardown()


class FetchLinesFn(beam.DoFn):
    """((path, block), [byte offsets]) -> (path, offset, line), as ReadLinesWithOffsets yields them: only the lines
    of the records the clone needs, by seeking (forward, in order: a compressed file is read once at most)."""

    def __init__(self) -> None:
        beam.DoFn.__init__(self)  # Beam's own (unannotated) __init__, named: mypy takes super()'s for ours

    def process(self, item: tuple[tuple[str, int], Iterable[Any]]) -> Iterable[Any]:
        """Offsets, or (offset, raw-line digest) pairs: a line whose bytes are no longer the ones classified (the
        source changed under the run) is a dead letter (``source_changed``) instead."""
        (path, _), offsets = item
        wanted = sorted({o if isinstance(o, tuple) else (o, 0) for o in offsets})
        with _open(path) as f:
            for offset, raw in wanted:
                f.seek(offset)
                line = _strip_eol(f.readline())
                if raw and line_digest(line) != raw:
                    yield beam.pvalue.TaggedOutput(counters.DEAD_LETTER, _changed_line(path, offset, line))
                    continue
                yield path, offset, line


def _changed_line(path: str, offset: int, line: bytes) -> DeadLetter:
    from neural_ingest.records import READ

    return DeadLetter(READ, "source_changed", f"the line at byte {offset} of {path} is not the one this run classified "
                      "there: the source changed during the run; run again once it is complete", {"file": path, "line": line})


_STAMPS_PAGE, _STAMPS_SLICES = 2000, 2


def stamps_reader(live: OpenSearchSourceConfig) -> OpenSearchSourceConfig:
    """The live reader for the stamps only: a hit is a few digests, so pages of 2,000 and at least two slices
    (read by parallel threads) instead of the vector reader's 200 in one. Read alone: 100,000 stamps 3.6 s -> 1.7 s,
    1,000,000 28.6 s -> 16.3 s; it overlaps the source scan, which stays the longer part of a night."""
    return live.model_copy(update={"page_size": max(live.page_size, _STAMPS_PAGE),
                                   "slices": max(live.slices or 1, _STAMPS_SLICES)})


