"""Every stage's dead letters and skipped records, as JSONL files of the run: ``<dir>/<run_id>/dead-letters-NNNNN.jsonl``
and ``skipped-NNNNN.jsonl`` (an empty ``-00000`` file when there are none).

Each bundle writes what it has to temporary files of its own and one step after all bundles names the committed ones
(``bundle_files``): two stages for both outputs, where Beam's ``WriteToText`` costs five for each.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from neural_ingest.records import DeadLetter
from neural_ingest.transforms.bundle_files import BundleFilesFn, CommitBundleFiles, temp_dir_under

DEAD_LETTERS = "dead-letters"
SKIPPED_FILES = "skipped"


class _WriteBundleFn(BundleFilesFn):
    """(name, DeadLetter) -> JSONL lines in one temporary file per name and bundle; (name, path) of each file out."""

    ext = "jsonl"

    def __init__(self, temp_dir: str, run_id: str):
        super().__init__(temp_dir)
        self.run_id = run_id

    def open_file(self, path: str) -> Any:
        return FileSystems.create(path, mime_type="application/jsonl")

    def process(self, item: tuple[str, DeadLetter]) -> Iterable[Any]:
        name, letter = item
        self.file(name).write(letter.to_json(self.run_id).encode("utf-8") + b"\n")
        return ()


class WriteDeadLetters(beam.PTransform[Any, Any]):
    """{name: DeadLetters} (``dead-letters``, ``skipped``) -> ``<dir>/<run_id>/<name>-NNNNN.jsonl`` files."""

    def __init__(self, directory: str, run_id: str):
        super().__init__()
        self.run_dir = f"{directory.rstrip('/')}/{run_id}"
        self.run_id = run_id

    def expand(self, outputs: dict[str, beam.PCollection[Any]]) -> Any:
        temp_dir = temp_dir_under(self.run_dir)
        named = [
            pcoll | f"Name{name.title().replace('-', '')}" >> beam.Map(lambda d, name=name: (name, d))
            for name, pcoll in outputs.items()
        ]
        return (
            tuple(named)
            | "AllLetters" >> beam.Flatten()
            | "WriteBundles" >> beam.ParDo(_WriteBundleFn(temp_dir, self.run_id))
            | "Commit" >> CommitBundleFiles(self.run_dir, temp_dir, outputs, "jsonl")
        )
