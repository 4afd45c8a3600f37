"""WriteDeadLetters: every letter in exactly one file of its kind, files of every kind even when empty, and nothing
of the temporary files left behind."""
from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam

from neural_ingest.records import DeadLetter
from neural_ingest.transforms.dead_letters import DEAD_LETTERS, SKIPPED_FILES, WriteDeadLetters


def letters(kind: str, n: int) -> list[DeadLetter]:
    return [DeadLetter("prepare", kind, f"{kind} {i}", {"id": str(i)}, doc_id=str(i)) for i in range(n)]


def run(tmp_path: Path, dead: list[DeadLetter], skipped: list[DeadLetter]) -> Path:
    with beam.Pipeline("DirectRunner") as p:
        outputs = {
            DEAD_LETTERS: p | "Dead" >> beam.Create(dead) | "Spread" >> beam.Reshuffle(),  # several bundles
            SKIPPED_FILES: p | "Skipped" >> beam.Create(skipped),
        }
        _ = outputs | WriteDeadLetters(str(tmp_path / "dlq"), "run-1")
    return tmp_path / "dlq" / "run-1"


def test_every_letter_once_in_its_kinds_files_and_no_temporary_files_left(tmp_path):
    run_dir = run(tmp_path, letters("bad", 250), letters("duplicate_id", 3))
    lines = {kind: [json.loads(x) for f in sorted(run_dir.glob(f"{kind}-*.jsonl")) for x in f.read_text().splitlines()]
             for kind in (DEAD_LETTERS, SKIPPED_FILES)}
    assert sorted(d["doc_id"] for d in lines[DEAD_LETTERS]) == sorted(str(i) for i in range(250))
    assert [d["error_type"] for d in lines[SKIPPED_FILES]] == ["duplicate_id"] * 3
    assert all(d["run_id"] == "run-1" for d in lines[DEAD_LETTERS])
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.endswith(".jsonl")) == []  # the .tmp-* directory went


def test_a_run_without_letters_still_has_an_empty_file_of_each_kind(tmp_path):
    run_dir = run(tmp_path, [], [])
    assert sorted(p.name for p in run_dir.iterdir()) == ["dead-letters-00000.jsonl", "skipped-00000.jsonl"]
    assert (run_dir / "dead-letters-00000.jsonl").read_text() == ""
