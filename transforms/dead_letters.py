"""Collect every stage's dead letters into one JSONL output for the run."""
from __future__ import annotations

from typing import Any

import apache_beam as beam


class WriteDeadLetters(beam.PTransform[Any, Any]):
    """DeadLetters -> JSONL files ``<dir>/<run_id>/<name>-*.jsonl`` (``dead-letters`` or ``skipped``)."""

    def __init__(self, directory: str, run_id: str, name: str = "dead-letters"):
        super().__init__()
        self.directory = directory.rstrip("/")
        self.run_id = run_id
        self.name = name

    def expand(self, dead: beam.PCollection[Any]) -> Any:
        run_id = self.run_id
        return (
            dead
            | "ToJson" >> beam.Map(lambda d: d.to_json(run_id))
            | "WriteJsonl" >> beam.io.WriteToText(
                f"{self.directory}/{run_id}/{self.name}", file_name_suffix=".jsonl", shard_name_template="-SSSSS"
            )
        )
