"""Every stage's dead letters and skipped records, as JSONL files of the run: ``<dir>/<run_id>/dead-letters-NNNNN.jsonl``
and ``skipped-NNNNN.jsonl`` (an empty ``-00000`` file when there are none).

Beam's ``WriteToText`` costs five stages a sink (initialise, write, group, pre-finalise, finalise), run even when
nothing is written: for the two outputs of every run that was most of a small run's fixed cost (profiled). Here each
bundle writes what it has to temporary files of its own, in a directory of this run, and hands their names on; one
step after all bundles gives the committed ones their final names and deletes the directory, so a retried bundle's
files (never handed on) are not kept. Beam's ``FileSystems``: local paths, gs://, s3:// alike.
"""
from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from neural_ingest.records import DeadLetter

DEAD_LETTERS = "dead-letters"
SKIPPED_FILES = "skipped"


class _WriteBundleFn(beam.DoFn):
    """(name, DeadLetter) -> JSONL lines in one temporary file per name and bundle; (name, path) of each file out."""

    def __init__(self, temp_dir: str, run_id: str):
        self.temp_dir = temp_dir
        self.run_id = run_id

    def start_bundle(self) -> None:
        self._files: dict[str, tuple[str, Any]] = {}

    def process(self, item: tuple[str, DeadLetter]) -> Iterable[Any]:
        name, letter = item
        opened = self._files.get(name)
        if opened is None:
            path = FileSystems.join(self.temp_dir, f"{name}-{uuid.uuid4().hex}.jsonl")
            opened = self._files[name] = (path, FileSystems.create(path, mime_type="application/jsonl"))
        opened[1].write(letter.to_json(self.run_id).encode("utf-8") + b"\n")
        return ()

    def finish_bundle(self) -> Iterable[Any]:
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.windowed_value import WindowedValue

        files, self._files = self._files, {}
        for name, (path, handle) in files.items():
            handle.close()
            yield WindowedValue((name, path), GlobalWindow().max_timestamp(), (GlobalWindow(),))


def _name_files(_: Any, written: list[tuple[str, str]], run_dir: str, temp_dir: str, names: tuple[str, ...]) -> None:
    """The committed temporary files -> ``<name>-NNNNN.jsonl`` in ``run_dir`` (``-00000`` empty when a name has none);
    then the temporary directory goes, with any file of a bundle that was retried."""
    for name in names:
        paths = sorted({path for n, path in written if n == name})
        if not paths:
            FileSystems.create(FileSystems.join(run_dir, f"{name}-00000.jsonl")).close()
            continue
        todo = [(src, FileSystems.join(run_dir, f"{name}-{i:05d}.jsonl")) for i, src in enumerate(paths)]
        todo = [(src, dst) for src, dst in todo if FileSystems.exists(src)]  # a retried finalise: already moved
        if todo:
            FileSystems.rename([src for src, _ in todo], [dst for _, dst in todo])
    with contextlib.suppress(OSError):  # gone already (a retried finalise), or none was made: nothing to clean
        FileSystems.delete([temp_dir])


class WriteDeadLetters(beam.PTransform[Any, Any]):
    """{name: DeadLetters} (``dead-letters``, ``skipped``) -> ``<dir>/<run_id>/<name>-NNNNN.jsonl`` files."""

    def __init__(self, directory: str, run_id: str):
        super().__init__()
        self.run_dir = f"{directory.rstrip('/')}/{run_id}"
        self.run_id = run_id

    def expand(self, outputs: dict[str, beam.PCollection[Any]]) -> Any:
        temp_dir = FileSystems.join(self.run_dir, f".tmp-{uuid.uuid4().hex[:12]}")
        named = [
            pcoll | f"Name{name.title().replace('-', '')}" >> beam.Map(lambda d, name=name: (name, d))
            for name, pcoll in outputs.items()
        ]
        written = (
            tuple(named)
            | "AllLetters" >> beam.Flatten()
            | "WriteBundles" >> beam.ParDo(_WriteBundleFn(temp_dir, self.run_id))
        )
        return (
            written.pipeline
            | "Once" >> beam.Create([None])
            | "NameFiles" >> beam.Map(
                _name_files, beam.pvalue.AsList(written), self.run_dir, temp_dir, tuple(outputs)
            )
        )
