"""Read source files into raw records (dicts), with a dead-letter output for what cannot be parsed.

JSONL goes through Beam's splittable text source (a large file is read in parallel); CSV and plain
text are read per file, because CSV rows may span lines and a text file is one document.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Iterable

import apache_beam as beam
from apache_beam import coders
from apache_beam.io import fileio

from neural_ingest.config import SourceConfig
from neural_ingest.records import READ, DeadLetter
from neural_ingest.transforms import counters
from neural_ingest.transforms.counters import DEAD_LETTER
from neural_ingest.transforms.positions import ReadLinesWithOffsets, ReadParquetWithPositions, with_position


def _dead(reason: str, message: str, record: Any) -> beam.pvalue.TaggedOutput:
    counters.failed(READ, reason)
    return beam.pvalue.TaggedOutput(DEAD_LETTER, DeadLetter(READ, reason, message, record))


class ParseJsonLine(beam.DoFn):
    """bytes line -> dict; malformed JSON, non-UTF-8 bytes and non-object lines are dead letters."""

    def __init__(self, encoding: str = "utf-8"):
        self.encoding = encoding

    def process(self, item: tuple[str, int, bytes]) -> Iterable[Any]:
        yield from self._outputs(item)

    def _outputs(self, item: tuple[str, int, bytes]) -> Iterable[Any]:
        filename, offset, line = item
        if not line.strip():
            return  # blank lines separate nothing in JSONL: not a record
        counters.inc("read")
        where = {"file": filename, "line": line}
        try:
            text = line.decode(self.encoding)
        except UnicodeDecodeError as e:
            yield _dead("invalid_encoding", f"not valid {self.encoding}: {e}", where)
            return
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            yield _dead("malformed_json", f"malformed JSON: {e}", where)
            return
        if not isinstance(obj, dict):
            yield _dead("not_an_object", f"expected a JSON object, got {type(obj).__name__}", where)
            return
        yield with_position(obj, filename, offset)


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
                if any(_has_surrogates(v) for v in row):
                    yield _dead("invalid_encoding", f"{path} line {reader.line_num}: not valid {self.encoding}", where)
                elif len(row) != len(header):
                    yield _dead(
                        "malformed_csv",
                        f"{path} line {reader.line_num}: {len(row)} fields, header has {len(header)}",
                        where,
                    )
                else:
                    yield with_position(dict(zip(header, row)), path, reader.line_num)


def _has_surrogates(s: str) -> bool:
    try:
        s.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


class ReadTextFile(beam.DoFn):
    """One plain-text file is one document: id = its path, text = its content."""

    def __init__(self, encoding: str = "utf-8"):
        self.encoding = encoding

    def process(self, readable: fileio.ReadableFile) -> Iterable[Any]:
        yield from self._outputs(readable)

    def _outputs(self, readable: fileio.ReadableFile) -> Iterable[Any]:
        path = readable.metadata.path
        counters.inc("read")
        data = readable.read()
        try:
            yield {"id": path, "path": path, "text": data.decode(self.encoding)}
        except UnicodeDecodeError as e:
            yield _dead("invalid_encoding", f"{path}: not valid {self.encoding}: {e}", {"file": path})


def _count_read(record: dict[str, Any]) -> dict[str, Any]:
    counters.inc("read")
    return record


class ReadRecords(beam.PTransform):
    """Source config -> {"records": dicts, "dead_letter": DeadLetters}."""

    def __init__(self, cfg: SourceConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        c = self.cfg
        if c.type == "opensearch":  # an existing index: point in time + slices + search_after
            from neural_ingest.transforms.read_opensearch import ReadFromOpenSearch

            return pbegin | "ReadOpenSearch" >> ReadFromOpenSearch(c)
        if c.type == "parquet":
            records = pbegin | "ReadParquet" >> ReadParquetWithPositions(c.path) | "CountRead" >> beam.Map(_count_read)
            dead = pbegin | "NoReadErrors" >> beam.Create([])
            return {"records": records, DEAD_LETTER: dead}
        if c.type == "jsonl":
            lines = pbegin | "ReadLines" >> ReadLinesWithOffsets(c.path, coder=coders.BytesCoder())  # (file, byte offset, line)
            parsed = lines | "ParseJson" >> beam.ParDo(ParseJsonLine(c.encoding)).with_outputs(DEAD_LETTER, main="records")
        else:
            files = pbegin | "Match" >> fileio.MatchFiles(c.path) | "Open" >> fileio.ReadMatches()
            fn = ParseCsvFile(c.csv_delimiter, c.encoding) if c.type == "csv" else ReadTextFile(c.encoding)
            parsed = files | f"Parse{c.type.title()}" >> beam.ParDo(fn).with_outputs(DEAD_LETTER, main="records")
        return {"records": parsed.records, DEAD_LETTER: parsed[DEAD_LETTER]}
