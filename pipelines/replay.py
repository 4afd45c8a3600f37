"""Replay dead letters: re-run the records of an earlier run's dead-letter files through the pipeline.

Each dead letter keeps the original record. Records that failed at read time are replayed from their
raw line (JSONL: edit the dead-letter file's "line" to fix them first) or, for CSV, rebuilt from the
row and the file's header (edit the "row" list); later stages replay the parsed source record.

A replay adds to what the sink holds (the sink's UPSERT mode): a document whose id is already there
is replaced, nothing else is touched, on every sink. Document ids are deterministic, so replaying
after the cause is fixed overwrites, never duplicates. Only dead-letters*.jsonl files are replayed:
skipped-*.jsonl lists records left out on purpose (duplicate ids, empty text); replaying a duplicate
would overwrite the document the run kept.
"""
from __future__ import annotations

import csv
import glob
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neural_ingest.config import PipelineConfig
from neural_ingest.metadata import lone_surrogate
from neural_ingest.records import READ, DeadLetter
from neural_ingest.sinks import UPSERT, make_sink
from neural_ingest.summary import RunSummary

log = logging.getLogger(__name__)

DEAD_LETTERS_GLOB = "dead-letters*.jsonl"
SKIPPED_PREFIX = "skipped"
NOT_REPLAYED = "dead-letters-not-replayed.jsonl"  # replayable again once fixed: it matches DEAD_LETTERS_GLOB


def dead_letter_files(path: str) -> list[str]:
    """A run directory, a file, or a glob -> the dead-letter JSONL files in it (never skipped-*.jsonl)."""
    matches = [path] if os.path.isdir(path) else sorted(glob.glob(path))
    files: list[str] = []
    refused: list[str] = []
    for m in matches:
        if os.path.isdir(m):
            files += sorted(glob.glob(os.path.join(m, "**", DEAD_LETTERS_GLOB), recursive=True))
        elif os.path.basename(m).startswith(SKIPPED_PREFIX):
            refused.append(m)
        else:
            files.append(m)
    if refused:
        log.warning("not replaying %d skipped-*.jsonl file(s) (e.g. %s): skipped records (duplicate ids, empty text) "
                    "are not failures", len(refused), refused[0])
    if not files and refused:
        raise ValueError(
            f"{path} holds only skipped records (e.g. {refused[0]}): they were left out on purpose, and replaying "
            f"a duplicate would overwrite the document the run kept; replay the run's {DEAD_LETTERS_GLOB} files"
        )
    return sorted(dict.fromkeys(files))


@dataclass
class ReplayInput:
    """What the dead letters hold: JSONL lines to run again, and letters that cannot be rebuilt as they are."""

    lines: list[str] = field(default_factory=list)
    not_replayable: list[DeadLetter] = field(default_factory=list)


class _Headers:
    """CSV headers of source files, for dead letters written before they carried their header."""

    def __init__(self, delimiter: str, encoding: str):
        self.delimiter, self.encoding = delimiter, encoding
        self._cache: dict[str, list[str] | None] = {}

    def get(self, path: str) -> list[str] | None:
        if path not in self._cache:
            try:
                with open(path, encoding=self.encoding, newline="") as f:
                    self._cache[path] = next(csv.reader(f, delimiter=self.delimiter), None)
            except (OSError, UnicodeDecodeError, csv.Error):
                self._cache[path] = None
        return self._cache[path]


def read_dead_letters(files: list[str], cfg: PipelineConfig | None = None) -> ReplayInput:
    """Every dead letter in ``files`` -> a JSONL line of its source record, or a letter saying why it cannot be."""
    s = cfg.source if cfg is not None else None
    headers = _Headers(getattr(s, "csv_delimiter", ",") or ",", getattr(s, "encoding", "utf-8") or "utf-8")
    out = ReplayInput()
    for name, n, letter in _letters(files):
        got = _original(letter, headers)
        if isinstance(got, str):
            out.lines.append(got)
        else:
            got.message = f"{name} line {n}: {got.message}"
            out.not_replayable.append(got)
    return out


def _letters(files: list[str]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    for name in files:
        with open(name, encoding="utf-8", errors="surrogateescape") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    letter = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{name} line {n} is not a dead letter ({e}): was the file edited by hand?") from None
                if not isinstance(letter, dict):
                    raise ValueError(f"{name} line {n} is not a dead letter (a JSON object): was the file edited by hand?")
                yield name, n, letter


def _original(letter: dict[str, Any], headers: _Headers) -> str | DeadLetter:
    record = letter.get("record")
    if letter.get("stage") == READ and isinstance(record, dict):
        if isinstance(record.get("line"), str):
            return str(record["line"]).rstrip("\n")  # replay the raw line: it fails again unless it was fixed
        if "file" in record:  # CSV row {"file", "line", "header", "row"}, or a file that could not be read
            return _csv_record(letter, record, headers)
    if isinstance(record, dict) and "source" in record and isinstance(record.get("source"), dict):
        return json.dumps(record["source"])  # encode/index stage: a Document
    return json.dumps(record)  # ASCII escapes: the record comes back exactly, whatever it holds


def _csv_record(letter: dict[str, Any], record: dict[str, Any], headers: _Headers) -> str | DeadLetter:
    """A CSV read failure -> the record the reader makes of a good row (header -> value), once the row is fixed."""
    where = f"{record.get('file')} line {record.get('line')}" if "line" in record else str(record.get("file"))
    row = record.get("row")

    def keep(reason: str, message: str) -> DeadLetter:
        return DeadLetter(READ, reason, message, record, doc_id=letter.get("doc_id"))

    if not isinstance(row, list):
        reason = str(letter.get("error_type") or "not_replayable")
        return keep(reason, f"{where} could not be read, so the dead letter holds no record to replay: fix the source "
                            "file and run it again (for a CSV row: or add its values to this dead letter as a \"row\" list)")
    header = record.get("header")
    if header is None and isinstance(record.get("file"), str):
        header = headers.get(record["file"])  # dead letters written before they carried the header
    if not isinstance(header, list) or not header:
        return keep("missing_header", f"{where}: no CSV header names the row's values: add a \"header\" list to the dead letter")
    if any(isinstance(v, str) and lone_surrogate(v) for v in row):
        return keep("invalid_encoding", f"{where}: the row still holds bytes that are not UTF-8: fix the dead letter's \"row\"")
    if len(row) != len(header):
        return keep("malformed_csv", f"{where}: {len(row)} fields, header has {len(header)}: fix the dead letter's \"row\"")
    values = ["" if v is None else v if isinstance(v, str) else json.dumps(v) for v in row]
    return json.dumps(dict(zip((str(h) for h in header), values)))


def replay(
    dlq_path: str, cfg: PipelineConfig, beam_args: list[str] | None = None, summary_path: str | None = None,
    *, config_path: str | None = None,
) -> RunSummary:
    """Run the dead letters' records again, adding them to what the sink holds (never replacing it)."""
    from neural_ingest.pipelines.ingest import new_run_id, run_ingest

    files = dead_letter_files(dlq_path)
    if not files:
        raise FileNotFoundError(f"no dead-letter files ({DEAD_LETTERS_GLOB}) under {dlq_path}")
    got = read_dead_letters(files, cfg)
    if not got.lines:
        reasons = "; ".join(d.message for d in got.not_replayable[:3])
        raise ValueError(f"nothing to replay in {dlq_path}" + (f": {reasons}" if reasons else ""))
    out = Path(cfg.dead_letter.path) / f"replay-input-{new_run_id()}" / "records.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    # surrogatepass: a lone surrogate in a hand-edited line reaches the reader (and its dead letters), not a crash here
    with out.open("w", encoding="utf-8", errors="surrogatepass") as f:
        for line in got.lines:
            f.write(line + "\n")
    log.info("replaying %d dead letters from %d file(s) via %s", len(got.lines), len(files), out)
    if cfg.source.type == "opensearch":  # the records are the index's _source (+ _id): replay them as JSONL
        from neural_ingest.config import SourceConfig

        s = cfg.source
        source = SourceConfig(type="jsonl", path=str(out), id_field=s.id_field, text_fields=s.text_fields,
                              text_separator=s.text_separator, metadata_fields=s.metadata_fields, deduplicate=s.deduplicate)
    else:
        source = cfg.source.model_copy(update={"type": "jsonl", "path": str(out), "encoding": "utf-8"})
    counter = make_sink(cfg.sink, UPSERT)
    before = counter.count()
    summary = run_ingest(cfg.model_copy(update={"source": source}), beam_args, summary_path, write_mode=UPSERT,
                         config_path=config_path)
    summary.sink_rows_before, summary.sink_rows_after = before, counter.count()
    if got.not_replayable:
        _carry_over(summary, got.not_replayable)
        summary.apply_error_budget(cfg.run.max_failed, cfg.run.max_failed_ratio)
    if summary.sink_shrank:
        from neural_ingest import exit_codes

        summary.status, summary.exit_code = "failed", exit_codes.ERROR_BUDGET
    if summary_path:
        summary.write(summary_path)
    return summary


def _carry_over(summary: RunSummary, letters: list[DeadLetter]) -> None:
    """Letters that could not be rebuilt count as read and failed in this replay, and go to its dead letters."""
    directory = Path(summary.dead_letter_path)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / NOT_REPLAYED).open("w", encoding="utf-8", errors="backslashreplace") as f:
        for d in letters:
            f.write(d.to_json(summary.run_id) + "\n")
            key = f"{READ}.{d.error_type}"
            summary.failed_by_reason[key] = summary.failed_by_reason.get(key, 0) + 1
    summary.read += len(letters)
    summary.failed += len(letters)
    log.warning("%d dead letters could not be rebuilt (e.g. %s); they are in %s",
                len(letters), letters[0].message, directory / NOT_REPLAYED)
