"""Output files written per bundle and committed once, after all bundles: the run's dead letters and its Parquet dataset.

Beam's file sinks (``WriteToText``, ``WriteToParquet``) cost five stages each (initialise, write, group, pre-finalise,
finalise), run even when nothing is written: profiled, that was most of a small run's fixed cost. Here a DoFn writes
what its bundle has to temporary files of its own, in a temporary directory, and hands their (name, path) on when
the bundle finishes; ``CommitBundleFiles`` then gives the committed files their final names and deletes the
directory, so a retried bundle's files (never handed on) are not kept. Beam's ``FileSystems``: local paths, gs://,
s3:// alike.
"""
from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue


def temp_dir_under(directory: str) -> str:
    """A new temporary directory's path in ``directory`` (a leading '.': readers of the directory skip it)."""
    return FileSystems.join(directory, f".tmp-{uuid.uuid4().hex[:12]}")


class BundleFilesFn(beam.DoFn):
    """Base of a DoFn whose bundle writes temporary files, one per name, opened on first use; ``(name, path)`` of each
    goes to the main output when the bundle finishes. Subclasses say how a file opens and closes."""

    ext = ""

    def __init__(self, temp_dir: str):
        self.temp_dir = temp_dir

    def start_bundle(self) -> None:
        self._files: dict[str, tuple[str, Any]] = {}

    def file(self, name: str) -> Any:
        """The bundle's open file for ``name`` (what ``open_file`` made)."""
        opened = self._files.get(name)
        if opened is None:
            path = FileSystems.join(self.temp_dir, f"{name}-{uuid.uuid4().hex}.{self.ext}")
            opened = self._files[name] = (path, self.open_file(path))
        return opened[1]

    def open_file(self, path: str) -> Any:
        raise NotImplementedError

    def close_file(self, handle: Any) -> None:
        handle.close()

    def finish_bundle(self) -> Iterable[Any]:
        files, self._files = self._files, {}
        for name, (path, handle) in files.items():
            self.close_file(handle)
            yield WindowedValue((name, path), GlobalWindow().max_timestamp(), (GlobalWindow(),))


def _commit(_: Any, written: list[tuple[str, str]], out_dir: str, temp_dir: str, names: tuple[str, ...], ext: str,
            write_empty: Callable[[str], None]) -> None:
    """The committed temporary files -> ``<out_dir>/<name>-NNNNN.<ext>`` (an empty ``-00000`` when a name has none);
    then the temporary directory goes, with any file of a bundle that was retried."""
    for name in names:
        paths = sorted({path for n, path in written if n == name})
        if not paths:
            write_empty(FileSystems.join(out_dir, f"{name}-00000.{ext}"))
            continue
        todo = [(src, FileSystems.join(out_dir, f"{name}-{i:05d}.{ext}")) for i, src in enumerate(paths)]
        todo = [(src, dst) for src, dst in todo if FileSystems.exists(src)]  # a retried commit: already moved
        if todo:
            FileSystems.rename([src for src, _ in todo], [dst for _, dst in todo])
    with contextlib.suppress(OSError):  # gone already (a retried commit), or none was made: nothing to clean
        FileSystems.delete([temp_dir])


def _empty_file(path: str) -> None:
    FileSystems.create(path).close()


class CommitBundleFiles(beam.PTransform[beam.PCollection[Any], beam.PCollection[Any]]):
    """(name, temporary path) of every committed bundle -> the files' final names, in one step after all bundles."""

    def __init__(self, out_dir: str, temp_dir: str, names: Iterable[str], ext: str,
                 write_empty: Callable[[str], None] = _empty_file):
        super().__init__()
        self.out_dir = out_dir
        self.temp_dir = temp_dir
        self.names = tuple(names)
        self.ext = ext
        self.write_empty = write_empty

    def expand(self, written: beam.PCollection[Any]) -> beam.PCollection[Any]:
        done: beam.PCollection[Any] = (
            written.pipeline
            | "Once" >> beam.Create([None])
            | "NameFiles" >> beam.Map(
                _commit, beam.pvalue.AsList(written), self.out_dir, self.temp_dir, self.names, self.ext,
                self.write_empty,
            )
        )
        return done
