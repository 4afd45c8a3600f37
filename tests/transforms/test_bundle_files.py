"""CommitBundleFiles: only the files bundles handed on are kept, under their final names; a second commit (a retried
step) changes nothing; a name with no file gets its empty one."""
from __future__ import annotations

from pathlib import Path

from neural_ingest.transforms.bundle_files import _commit


def empty_marker(path: str) -> None:
    Path(path).write_text("EMPTY")


def test_only_the_files_handed_on_are_kept_and_a_second_commit_changes_nothing(tmp_path):
    out, temp = tmp_path / "run", tmp_path / "run" / ".tmp-x"
    temp.mkdir(parents=True)
    (temp / "a-1.txt").write_text("one\n")
    (temp / "a-2.txt").write_text("two\n")
    (temp / "a-retried.txt").write_text("one\n")  # a bundle that failed, then ran again as "a-1"
    written = [("a", str(temp / "a-2.txt")), ("a", str(temp / "a-1.txt")), ("a", str(temp / "a-1.txt"))]
    for _ in range(2):
        _commit(None, written, str(out), str(temp), ("a", "b"), "txt", empty_marker)
    assert sorted(p.name for p in out.iterdir()) == ["a-00000.txt", "a-00001.txt", "b-00000.txt"]
    assert [(out / f"a-0000{i}.txt").read_text() for i in range(2)] == ["one\n", "two\n"]
    assert (out / "b-00000.txt").read_text() == "EMPTY"
