"""Read source files into raw records (dicts), with a dead-letter output for what cannot be parsed.

JSONL goes through Beam's splittable text source (a large file is read in parallel); CSV and plain
text are read per file, because CSV rows may span lines and a text file is one document.
"""
from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
from apache_beam import coders
from apache_beam.io import fileio

from neural_ingest.config import AnySourceConfig, SourceConfig
from neural_ingest.json_lines import flat_record
from neural_ingest.metadata import arrow_values, lone_surrogate, record_problem
from neural_ingest.records import READ
from neural_ingest.transforms import counters
from neural_ingest.transforms.chunks import Chunk
from neural_ingest.transforms.counters import DEAD_LETTER, DeadLetterOutput
from neural_ingest.transforms.positions import (
    POSITION,
    ReadLineChunksWithOffsets,
    ReadLinesWithOffsets,
    with_position,
)


def _dead(reason: str, message: str, record: Any) -> DeadLetterOutput:
    return counters.dead_letter(READ, reason, message, record)


class _JsonLines(counters.Tallied, beam.DoFn):
    """bytes line -> dict (``read`` counted once a bundle); malformed JSON, non-UTF-8 bytes, non-object lines, lone
    surrogate escapes (``"\\ud800"``: valid JSON, not Unicode) and nesting no later stage could carry are dead letters.
    The rules of ParseJsonLine (a line an element) and ParseJsonChunk (a chunk of lines an element)."""

    def __init__(self, encoding: str = "utf-8", line_digests: bool = False):
        self.encoding = encoding
        self.line_digests = line_digests  # position (file, offset, raw-line digest): reindex's stamps manifest
        self._utf8 = codecs.lookup(encoding).name == "utf-8"  # flat_record's bytes are UTF-8

    def _parse(self, filename: str, offset: int, line: bytes) -> Any:
        """The line's one outcome: its record (a dict), its dead letter, or None (a blank line)."""
        if not line or line.isspace():
            return None  # blank lines separate nothing in JSONL: not a record
        self.count("read")
        obj = flat_record(line) if self._utf8 else None  # the common line, parsed by orjson (json_lines.py)
        if obj is None:
            obj = self._slow(filename, line)
            if type(obj) is not dict:
                return obj
        if self.line_digests:
            from neural_ingest.transforms.manifest import line_digest

            obj[POSITION] = (filename, offset, line_digest(line))
            return obj
        return with_position(obj, filename, offset)

    def _slow(self, filename: str, line: bytes) -> Any:
        """json.loads' record of the line (checked: record_problem), or its dead letter."""
        try:
            text = line.decode(self.encoding)
        except UnicodeDecodeError as e:
            return _dead("invalid_encoding", f"not valid {self.encoding}: {e}", {"file": filename, "line": line})
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as e:  # JSONDecodeError, an integer past 4300 digits, nesting too deep
            return _dead("malformed_json", f"malformed JSON: {str(e)[:500]}", {"file": filename, "line": line})
        if type(obj) is not dict:
            return _dead("not_an_object", f"expected a JSON object, got {type(obj).__name__}", {"file": filename, "line": line})
        problem = record_problem(obj)
        if problem is not None:
            reason, message = problem
            return _dead(reason, f"{message}: fix it at the source", {"file": filename, "line": line})
        return obj


class ParseJsonLine(_JsonLines):
    """(file, byte offset, line) -> its record (a dict), or its dead letter; nothing for a blank line."""

    def process(self, item: tuple[str, int, bytes]) -> Iterable[Any]:
        yield from self._outputs(item)

    def _outputs(self, item: tuple[str, int, bytes]) -> Iterable[Any]:
        out = self._parse(*item)
        if out is not None:
            yield out


class ParseJsonChunk(_JsonLines):
    """(file, [(byte offset, line), ...]) -> one list of records (ParseJsonLine's rules for each line; its
    dead letters one a line, as they come): one Beam element a chunk instead of one a line."""

    def process(self, item: tuple[str, list[tuple[int, bytes]]]) -> Iterable[Any]:
        filename, lines = item
        records: list[Any] = []
        keep = records.append
        parse = self._parse
        for offset, line in lines:
            out = parse(filename, offset, line)
            if type(out) is dict:
                keep(out)
            elif out is not None:
                yield out
        if records:
            yield records


class ToChunks(beam.DoFn):
    """Elements -> lists of up to ``size`` of them, per window and bundle (nothing held across bundles)."""

    def __init__(self, size: int = 1000):
        self.size = size

    def start_bundle(self) -> None:
        self._buffers: dict[Any, list[Any]] = {}

    def process(self, element: Any, window: Any = beam.DoFn.WindowParam) -> Iterable[Any]:
        buf = self._buffers.setdefault(window, [])
        buf.append(element)
        if len(buf) >= self.size:
            del self._buffers[window]
            yield buf

    def finish_bundle(self) -> Iterable[Any]:
        from apache_beam.utils.windowed_value import WindowedValue

        for window, buf in self._buffers.items():
            if buf:
                yield WindowedValue(buf, window.max_timestamp(), (window,))
        self._buffers = {}


class ParseCsvFile(beam.DoFn):
    """One CSV file -> one dict per row; rows with the wrong field count or bad bytes are dead letters."""

    def __init__(self, delimiter: str = ",", encoding: str = "utf-8"):
        self.delimiter = delimiter
        self.encoding = encoding

    def process(self, readable: fileio.ReadableFile) -> Iterable[Any]:
        yield from self._outputs(readable)

    def _outputs(self, readable: fileio.ReadableFile) -> Iterable[Any]:
        path = readable.metadata.path
        with readable.open(compression_type=None) as raw:
            # surrogateescape keeps going past bad bytes; rows holding them are dead-lettered below.
            text = io.TextIOWrapper(raw, encoding=self.encoding, errors="surrogateescape", newline="")
            reader = csv.reader(text, delimiter=self.delimiter)
            try:
                header = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                counters.inc("read")
                yield _dead("malformed_csv", f"{path}: unreadable header: {e}", {"file": path})
                return
            bad_header = any(_has_surrogates(h) for h in header)  # every row's keys: no row can go on
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as e:
                    counters.inc("read")
                    yield _dead("malformed_csv", f"{path} line {reader.line_num}: {e}", {"file": path, "line": reader.line_num})
                    continue
                if not row:
                    continue
                counters.inc("read")
                where = {"file": path, "line": reader.line_num, "header": header, "row": row}  # header: for replay
                if bad_header:
                    yield _dead("invalid_encoding", f"{path}: the header is not valid {self.encoding}", where)
                elif any(_has_surrogates(v) for v in row):
                    yield _dead("invalid_encoding", f"{path} line {reader.line_num}: not valid {self.encoding}", where)
                elif len(row) != len(header):
                    yield _dead(
                        "malformed_csv",
                        f"{path} line {reader.line_num}: {len(row)} fields, header has {len(header)}",
                        where,
                    )
                else:
                    yield with_position(dict(zip(header, row)), path, reader.line_num)


_has_surrogates = lone_surrogate  # bytes surrogateescape kept: not valid in the file's encoding


class ReadTextFile(beam.DoFn):
    """One plain-text file is one document: id = its path, text = its content."""

    def __init__(self, encoding: str = "utf-8"):
        self.encoding = encoding

    def process(self, readable: fileio.ReadableFile) -> Iterable[Any]:
        yield from self._outputs(readable)

    def _outputs(self, readable: fileio.ReadableFile) -> Iterable[Any]:
        path = readable.metadata.path
        counters.inc("read")
        if lone_surrogate(path):  # a file name that is not UTF-8 cannot be a document id
            yield _dead("invalid_unicode", f"{path!a}: the file name is not valid UTF-8: rename the file", {"file": path})
            return
        data = readable.read()
        try:
            yield {"id": path, "path": path, "text": data.decode(self.encoding)}
        except UnicodeDecodeError as e:
            yield _dead("invalid_encoding", f"{path}: not valid {self.encoding}: {e}", {"file": path})


def arrow_rows(table: Any, columns: list[str], where: dict[str, Any], first_row: int | None = None) -> Iterable[Any]:
    """Arrow table -> one dict per row, of the columns the source config names (as the OpenSearch source
    reads only those fields), in the forms of neural_ingest.metadata (ISO 8601 for temporal types, at any
    precision or range Arrow holds). A value with no such form dead-letters its row, naming the column.
    ``first_row``: the file's row index of the table's first row, kept as each record's source position."""
    names = [c for c in columns if c in table.column_names]
    converted = {c: arrow_values(table.column(c)) for c in names}
    for i in range(table.num_rows):
        counters.inc("read")
        row = {c: vals[i] for c, (vals, _bad) in converted.items()}
        problems = [f"column {c!r}: {bad[i]}" for c, (_vals, bad) in converted.items() if i in bad]
        if problems:
            yield _dead("invalid_value", f"{where['file']}: " + "; ".join(problems)[:2000], row)
        elif first_row is None:
            yield row
        else:
            yield with_position(row, where["file"], first_row + i)


class ParquetRowGroupsFn(beam.DoFn):
    """One Parquet file -> (path, row group index) per row group, so row groups are read in parallel (as
    Beam's splittable source does); a file whose footer cannot be read (truncated, not Parquet) is a dead letter."""

    def __init__(self) -> None:
        beam.DoFn.__init__(self)  # Beam's own (unannotated) __init__, named: mypy takes super()'s for ours

    def process(self, readable: fileio.ReadableFile) -> Iterable[Any]:
        import pyarrow.parquet as pq

        path = readable.metadata.path
        try:
            with readable.open(compression_type=None) as f:
                meta = pq.ParquetFile(f).metadata
                sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        except Exception as e:  # noqa: BLE001 - one unreadable file must not fail the run
            counters.inc("read")
            yield _dead("unreadable_file", f"{path}: not a readable Parquet file: {str(e)[:500]}", {"file": path})
            return
        start = 0
        for i, n in enumerate(sizes):
            yield path, i, start  # the group's first row index in the file: each row's source position
            start += n


class ReadParquetRowGroupFn(beam.DoFn):
    """(path, row group) -> rows (arrow_rows); a row group that cannot be decoded is one dead letter, from
    the row it failed at ({"file", "row_group", "row"}), after the rows before it."""

    def __init__(self, columns: list[str]):
        self.columns = columns

    def process(self, item: tuple[str, int, int]) -> Iterable[Any]:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from apache_beam.io.filesystems import FileSystems

        path, group, start = item
        where: dict[str, Any] = {"file": path, "row_group": group, "row": 0}
        try:
            with FileSystems.open(path, compression_type="uncompressed") as f:
                pf = pq.ParquetFile(f)
                names = [c for c in self.columns if c in pf.schema_arrow.names]
                for batch in pf.iter_batches(row_groups=[group], columns=names, batch_size=1024):
                    yield from arrow_rows(pa.Table.from_batches([batch]), names, where, start + where["row"])
                    where["row"] += batch.num_rows
        except Exception as e:  # noqa: BLE001 - a corrupt row group must not fail the run
            counters.inc("read")
            yield _dead("unreadable_file", f"{path} row group {group} from row {where['row']}: {str(e)[:500]}", dict(where))


def source_columns(cfg: SourceConfig) -> list[str]:
    """The fields a run reads from each record: id, text and metadata."""
    return list(dict.fromkeys([*([cfg.id_field] if cfg.id_field else []), *cfg.text_fields, *cfg.metadata_fields]))


class ReadRecords(beam.PTransform[beam.pvalue.PBegin, dict[str, beam.PCollection[Any]]]):
    """Source config -> {"records": dicts, "dead_letter": DeadLetters}. ``chunked`` (file sources): "records"
    holds lists of dicts (JSONL: a chunk of lines parsed at once), so the steps after it handle one Beam
    element per list, not per record; dead letters stay one per record."""

    def __init__(self, cfg: AnySourceConfig, line_digests: bool = False, chunked: bool = False):
        super().__init__()
        self.cfg = cfg
        self.line_digests = line_digests  # JSONL: each position carries its raw line's digest (reindex's manifest)
        self.chunked = chunked and cfg.type != "opensearch"

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection[Any]]:
        c = self.cfg
        if self.chunked and c.type == "jsonl":
            lines = pbegin | "ReadLineChunks" >> ReadLineChunksWithOffsets(c.path, coder=coders.BytesCoder())
            parsed = lines | "ParseJsonChunks" >> beam.ParDo(ParseJsonChunk(c.encoding, self.line_digests)).with_output_types(
                Chunk
            ).with_outputs(DEAD_LETTER, main="records")
            return {"records": parsed.records, DEAD_LETTER: parsed[DEAD_LETTER]}
        out = self._records(pbegin)
        if self.chunked:
            out["records"] = out["records"] | "ToChunks" >> beam.ParDo(ToChunks()).with_output_types(Chunk)
        return out

    def _records(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection[Any]]:
        c = self.cfg
        if c.type == "opensearch":  # an existing index: point in time + slices + search_after
            from neural_ingest.transforms.read_opensearch import ReadFromOpenSearch

            read: dict[str, beam.PCollection[Any]] = pbegin | "ReadOpenSearch" >> ReadFromOpenSearch(c)
            return read
        if c.type == "parquet":
            # Row groups read by us, not Beam's ReadFromParquet: its Table.to_pydict fails the whole run on one
            # ns timestamp or year past 9999, and a truncated file failed it too.
            groups = (
                pbegin
                | "MatchParquet" >> fileio.MatchFiles(c.path)
                | "OpenParquet" >> fileio.ReadMatches()
                | "RowGroups" >> beam.ParDo(ParquetRowGroupsFn()).with_outputs(DEAD_LETTER, main="groups")
            )
            rows = (
                groups.groups
                | "SpreadRowGroups" >> beam.Reshuffle()
                | "ReadRowGroups"
                >> beam.ParDo(ReadParquetRowGroupFn(source_columns(c))).with_outputs(DEAD_LETTER, main="records")
            )
            dead = (groups[DEAD_LETTER], rows[DEAD_LETTER]) | "ParquetDeadLetters" >> beam.Flatten()
            return {"records": rows.records, DEAD_LETTER: dead}
        if c.type == "jsonl":
            lines = pbegin | "ReadLines" >> ReadLinesWithOffsets(c.path, coder=coders.BytesCoder())  # (file, byte offset, line)
            parsed = lines | "ParseJson" >> beam.ParDo(ParseJsonLine(c.encoding, self.line_digests)).with_outputs(
                DEAD_LETTER, main="records"
            )
        else:
            files = pbegin | "Match" >> fileio.MatchFiles(c.path) | "Open" >> fileio.ReadMatches()
            fn = ParseCsvFile(c.csv_delimiter, c.encoding) if c.type == "csv" else ReadTextFile(c.encoding)
            parsed = files | f"Parse{c.type.title()}" >> beam.ParDo(fn).with_outputs(DEAD_LETTER, main="records")
        return {"records": parsed.records, DEAD_LETTER: parsed[DEAD_LETTER]}
