"""Replay dead letters: re-run the records of an earlier run's dead-letter files through the pipeline.

Each dead letter keeps the original record. Records that failed at read time are replayed from their
raw line (edit the dead-letter file to fix them first); later stages replay the parsed source record.
Document ids are deterministic, so replaying after the cause is fixed overwrites, never duplicates.
"""
from __future__ import annotations

import glob
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator

from neural_ingest.config import PipelineConfig
from neural_ingest.records import READ
from neural_ingest.summary import RunSummary

log = logging.getLogger(__name__)


def dead_letter_files(path: str) -> list[str]:
    """A run directory, a file, or a glob -> the dead-letter JSONL files in it."""
    if os.path.isdir(path):
        return sorted(glob.glob(os.path.join(path, "**", "dead-letters*.jsonl"), recursive=True))
    return sorted(glob.glob(path))


def original_lines(files: list[str]) -> Iterator[str]:
    """One JSONL line per dead letter: the source record as it was read."""
    for name in files:
        with open(name, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    letter = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{name} line {n} is not a dead letter ({e}): was the file edited by hand?") from None
                yield _original(letter)


def _original(letter: dict[str, Any]) -> str:
    record = letter.get("record")
    if letter.get("stage") == READ and isinstance(record, dict) and "line" in record and isinstance(record["line"], str):
        return record["line"].rstrip("\n")  # replay the raw line: it fails again unless it was fixed
    if isinstance(record, dict) and "source" in record and isinstance(record.get("source"), dict):
        return json.dumps(record["source"], ensure_ascii=False)  # encode/index stage: a Document
    return json.dumps(record, ensure_ascii=False)


def replay(
    dlq_path: str, cfg: PipelineConfig, beam_args: list[str] | None = None, summary_path: str | None = None,
    *, config_path: str | None = None,
) -> RunSummary:
    from neural_ingest.pipelines.ingest import new_run_id, run_ingest

    files = dead_letter_files(dlq_path)
    if not files:
        raise FileNotFoundError(f"no dead-letter files (dead-letters*.jsonl) under {dlq_path}")
    out = Path(cfg.dead_letter.path) / f"replay-input-{new_run_id()}" / "records.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with out.open("w", encoding="utf-8") as f:
        for line in original_lines(files):
            f.write(line + "\n")
            count += 1
    log.info("replaying %d dead letters from %d file(s) via %s", count, len(files), out)
    if cfg.source.type == "opensearch":  # the records are the index's _source (+ _id): replay them as JSONL
        from neural_ingest.config import SourceConfig

        s = cfg.source
        source = SourceConfig(type="jsonl", path=str(out), id_field=s.id_field, text_fields=s.text_fields,
                              text_separator=s.text_separator, metadata_fields=s.metadata_fields, deduplicate=s.deduplicate)
    else:
        source = cfg.source.model_copy(update={"type": "jsonl", "path": str(out), "encoding": "utf-8"})
    return run_ingest(cfg.model_copy(update={"source": source}), beam_args, summary_path, config_path=config_path)
