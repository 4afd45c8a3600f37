"""`dlq replay` adds to what the sink holds, on every sink: a Parquet dataset (plain and chunked) keeps its
rows and gains the replayed ones (a replayed id replaces its row), an existing index keeps its documents,
and a fixed CSV row is rebuilt from its header. Real model, real files, real OpenSearch."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from support import MINILM, hold_model, write_jsonl

from neural_ingest.cli import main
from neural_ingest.pipelines.ingest import run_ingest
from neural_ingest.pipelines.replay import NOT_REPLAYED, dead_letter_files, replay
from neural_ingest.sinks.base import SinkError

GOOD = [
    {"id": "a", "title": "Tides", "body": "The moon pulls the oceans twice a day."},
    {"id": "b", "title": "Bread", "body": "Yeast makes sourdough rise overnight."},
    {"id": "c", "title": "Rust", "body": "Iron oxidises when it meets water and air."},
    {"id": "d", "title": "Stars", "body": "Fusion of hydrogen powers the sun."},
]
BROKEN = '{"id": "e", "title": "Glaciers" "body": "a missing comma"}'  # malformed JSON: a read dead letter
FIXED = {"id": "e", "title": "Glaciers", "body": "Ice rivers carve valleys."}
CHUNKING = {"chunking.mode": "chunk", "chunking.token_limit": 128, "chunking.overlap_rate": 0.1}


def rows(path) -> dict[str, dict]:
    return {r["id"]: r for r in ds.dataset(str(path), format="parquet").to_table().to_pylist()}


def letter_files(cfg, summary) -> list[Path]:
    return sorted((Path(cfg.dead_letter.path) / summary.run_id).glob("dead-letters*.jsonl"))


def edit_letters(files: list[Path], edit) -> None:
    """What a user does: edit the record inside each dead letter, in place."""
    for f in files:
        letters = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
        f.write_text("".join(json.dumps(edit(d)) + "\n" for d in letters), encoding="utf-8")


def set_line(letter: dict, record: dict) -> dict:
    letter["record"]["line"] = json.dumps(record)
    return letter


def fix_line(letter: dict) -> dict:
    return set_line(letter, FIXED)


def config_file(tmp_path: Path, source: Path, cfg) -> Path:
    """The settings of ``cfg`` as a config file for the CLI (JSON is YAML)."""
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({
        "source": {"type": "jsonl", "path": str(source), "id_field": "id", "text_fields": ["title", "body"]},
        "encoder": {"type": "sentence_transformers", "model": MINILM, "device": "cpu"},
        "sink": {"type": "parquet", "path": cfg.sink.path},
        "dead_letter": {"path": cfg.dead_letter.path},
    }), encoding="utf-8")
    return config


@pytest.fixture
def source(tmp_path) -> Path:
    return write_jsonl(tmp_path / "docs.jsonl", [*GOOD, BROKEN])


@pytest.mark.parametrize("chunked", [False, True], ids=["plain", "chunked"])
def test_parquet_replay_adds_rows_and_upserts_by_id(make_config, source, chunked):
    cfg = make_config(source_path=source, overrides={"run.max_failed_ratio": 0.5, **(CHUNKING if chunked else {})})
    hold_model(cfg)
    first = run_ingest(cfg)
    assert (first.indexed, first.failed) == (4, 1)
    before = rows(cfg.sink.path)
    assert sorted(before) == ["a", "b", "c", "d"]

    edit_letters(letter_files(cfg, first), fix_line)
    again = replay(str(Path(cfg.dead_letter.path) / first.run_id), cfg)
    after = rows(cfg.sink.path)
    # 4 rows + 1 replayed = 5 (today: the dataset is replaced by the 1 replayed row)
    assert sorted(after) == ["a", "b", "c", "d", "e"]
    assert (again.status, again.indexed, again.sink_rows_before, again.sink_rows_after) == ("succeeded", 1, 4, 5)
    assert {i: after[i] for i in before} == before  # the rows that were there are untouched, vectors and all
    assert after["e"]["text"] == "Glaciers\n\nIce rivers carve valleys."

    # A replayed id that is already there replaces its row: the count stays, the row is the new one.
    edit_letters(letter_files(cfg, first), lambda d: set_line(d, {**GOOD[0], "body": "Spring tides."}))
    upsert = replay(str(Path(cfg.dead_letter.path) / first.run_id), cfg)
    final = rows(cfg.sink.path)
    assert (upsert.sink_rows_before, upsert.sink_rows_after) == (5, 5)
    assert sorted(final) == ["a", "b", "c", "d", "e"]
    assert final["a"]["text"] == "Tides\n\nSpring tides." and final["a"] != before["a"]
    assert {i: final[i] for i in "bcde"} == {i: after[i] for i in "bcde"}


def test_parquet_replay_that_cannot_merge_leaves_the_dataset_as_it_was(make_config, source, monkeypatch):
    cfg = make_config(source_path=source, overrides={"run.max_failed_ratio": 0.5})
    hold_model(cfg)
    first = run_ingest(cfg)
    edit_letters(letter_files(cfg, first), lambda d: set_line(d, {**GOOD[1], "body": "new"}))
    before = rows(cfg.sink.path)

    from neural_ingest.sinks import parquet

    def disk_full(*a, **k):  # the rewrite of the file holding "b" fails (a fault a real disk rarely shows on demand)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(parquet, "_copy_without", disk_full)
    with pytest.raises(SinkError, match="the dataset is unchanged"):
        replay(str(Path(cfg.dead_letter.path) / first.run_id), cfg)
    assert rows(cfg.sink.path) == before
    leftovers = [p.name for p in Path(cfg.sink.path).parent.iterdir() if p.name.startswith(".dataset.")]
    assert leftovers == []


def test_parquet_replay_with_another_model_layout_is_refused_before_encoding(make_config, source):
    cfg = make_config(source_path=source, overrides={"run.max_failed_ratio": 0.5})
    hold_model(cfg)
    first = run_ingest(cfg)
    edit_letters(letter_files(cfg, first), fix_line)
    chunked = make_config(source_path=source, overrides={"run.max_failed_ratio": 0.5, **CHUNKING})
    with pytest.raises(SinkError, match="replay with the config"):
        replay(str(Path(cfg.dead_letter.path) / first.run_id), chunked)
    assert sorted(rows(cfg.sink.path)) == ["a", "b", "c", "d"]


def test_opensearch_replay_keeps_the_documents_of_the_existing_index(make_config, source, index_name, os_client):
    cfg = make_config(source_path=source, sink="opensearch", index=index_name, overrides={"run.max_failed_ratio": 0.5})
    hold_model(cfg)
    first = run_ingest(cfg)
    assert first.indexed == 4
    created = os_client.indices.get(index=index_name)[index_name]["settings"]["index"]["creation_date"]

    edit_letters(letter_files(cfg, first), fix_line)
    again = replay(str(Path(cfg.dead_letter.path) / first.run_id), cfg)
    os_client.indices.refresh(index=index_name)
    assert os_client.count(index=index_name)["count"] == 5
    assert os_client.get(index=index_name, id="a")["_source"]["text"].startswith("Tides")
    assert os_client.get(index=index_name, id="e")["_source"]["text"] == "Glaciers\n\nIce rivers carve valleys."
    assert (again.sink_rows_before, again.sink_rows_after) == (4, 5)
    # the same index, not a new one of that name
    assert os_client.indices.get(index=index_name)[index_name]["settings"]["index"]["creation_date"] == created


def test_fixed_csv_row_replays_as_the_record_its_header_names(make_config, tmp_path):
    csv_path = tmp_path / "docs.csv"
    lines = ["id,title,body,topic"] + [f'{d["id"]},{d["title"]},"{d["body"]}",science' for d in GOOD]
    lines += ['e,Glaciers,Ice rivers, carve valleys,science', 'f,Lighthouses,"Keepers, lamps",history,extra']
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    overrides = {"run.max_failed_ratio": 0.5, "source.metadata_fields": ["topic"]}
    cfg = make_config(source_path=csv_path, source_type="csv", overrides=overrides)
    hold_model(cfg)
    first = run_ingest(cfg)
    assert (first.indexed, first.failed_by_reason) == (4, {"read.malformed_csv": 2})
    files = letter_files(cfg, first)
    stored = [json.loads(line)["record"] for f in files for line in f.read_text().splitlines() if line.strip()]
    assert all(r["header"] == ["id", "title", "body", "topic"] for r in stored)  # the header travels with the row

    def fix_e_only(letter: dict) -> dict:  # the user fixes one row and forgets the other
        if letter["record"]["row"][0] == "e":
            letter["record"]["row"] = ["e", "Glaciers", "Ice rivers, carve valleys", "science"]
        return letter

    edit_letters(files, fix_e_only)
    again = replay(str(Path(cfg.dead_letter.path) / first.run_id), cfg)
    got = rows(cfg.sink.path)
    # today: both replay as prepare.missing_text and the dataset is replaced by nothing
    assert sorted(got) == ["a", "b", "c", "d", "e"]
    assert got["e"]["text"] == "Glaciers\n\nIce rivers, carve valleys"
    assert json.loads(got["e"]["metadata"]) == {"topic": "science"}
    # the row still broken fails again with its own reason, and lands in this replay's dead letters
    assert (again.read, again.indexed, again.failed, again.failed_by_reason) == (2, 1, 1, {"read.malformed_csv": 1})
    assert again.reconciles
    carried = Path(again.dead_letter_path) / NOT_REPLAYED
    assert json.loads(carried.read_text())["record"]["row"] == ["f", "Lighthouses", "Keepers, lamps", "history", "extra"]

    # fixed there, it replays from the replay's own dead letters
    edit_letters([carried], lambda d: {**d, "record": {**d["record"], "row": ["f", "Lighthouses", "Keepers, lamps", "history"]}})
    third = replay(str(carried), cfg)
    assert (third.indexed, third.failed, third.sink_rows_after) == (1, 0, 6)
    assert rows(cfg.sink.path)["f"]["text"] == "Lighthouses\n\nKeepers, lamps"


def test_csv_dead_letter_without_header_takes_it_from_the_source_file(make_config, tmp_path):
    csv_path = tmp_path / "docs.csv"
    csv_path.write_text("id,title,body\na,Tides,The moon pulls the oceans.\n", encoding="utf-8")
    cfg = make_config(source_path=csv_path, source_type="csv", overrides={"source.metadata_fields": []})
    hold_model(cfg)
    old_style = {"run_id": "x", "stage": "read", "error_type": "malformed_csv", "message": "3 fields",
                 "record": {"file": str(csv_path), "line": 3, "row": ["z", "Honeybees", "Bees dance to share directions."]}}
    letters = write_jsonl(tmp_path / "old" / "dead-letters-00000.jsonl", [old_style])
    summary = replay(str(letters), cfg)
    assert (summary.indexed, summary.failed) == (1, 0)
    assert rows(cfg.sink.path)["z"]["text"] == "Honeybees\n\nBees dance to share directions."


def test_only_dead_letter_files_are_replayed_never_skipped_records(tmp_path):
    run = tmp_path / "dlq" / "20260101T000000Z-abcdef"
    for name in ("dead-letters-00000.jsonl", "dead-letters-00001.jsonl", "skipped-00000.jsonl"):
        write_jsonl(run / name, [])
    want = [str(run / "dead-letters-00000.jsonl"), str(run / "dead-letters-00001.jsonl")]
    assert dead_letter_files(str(run)) == want
    assert dead_letter_files(str(tmp_path / "dlq")) == want
    assert dead_letter_files(str(run / "*.jsonl")) == want  # a glob that also matches skipped-*.jsonl
    with pytest.raises(ValueError, match="skipped records"):
        dead_letter_files(str(run / "skipped-00000.jsonl"))


def test_cli_replay_says_how_many_rows_the_dataset_holds(make_config, source, tmp_path):
    cfg = make_config(source_path=source, overrides={"run.max_failed_ratio": 0.5})
    hold_model(cfg)
    first = run_ingest(cfg)
    edit_letters(letter_files(cfg, first), fix_line)
    config = config_file(tmp_path, source, cfg)
    summary_json = tmp_path / "summary.json"
    r = CliRunner().invoke(
        main, ["dlq", "replay", str(Path(cfg.dead_letter.path) / first.run_id), str(config), "--summary", str(summary_json)]
    )
    assert r.exit_code == 0, r.output
    got = json.loads(summary_json.read_text())
    assert (got["status"], got["sink_rows_before"], got["sink_rows_after"]) == ("succeeded", 4, 5)
    assert len(rows(cfg.sink.path)) == 5


def test_cli_replay_fails_when_the_sink_holds_fewer_rows_after(make_config, source, tmp_path, monkeypatch):
    """A replay only adds; if rows vanish meanwhile (another writer), it must not say "succeeded"."""
    cfg = make_config(source_path=source, overrides={"run.max_failed_ratio": 0.5})
    hold_model(cfg)
    first = run_ingest(cfg)
    edit_letters(letter_files(cfg, first), fix_line)
    from neural_ingest.sinks.parquet import ParquetSink

    publish = ParquetSink.finalize

    def publish_then_another_writer_prunes(sink, run_id, success):
        publish(sink, run_id, success)
        for f in sink._files():
            if "e" not in pq.read_table(f, columns=["id"]).column("id").to_pylist():
                f.unlink()  # the 4 rows of the first run go, as a careless cleanup job would do it

    monkeypatch.setattr(ParquetSink, "finalize", publish_then_another_writer_prunes)
    config = config_file(tmp_path, source, cfg)
    summary_json = tmp_path / "summary.json"
    r = CliRunner().invoke(
        main, ["dlq", "replay", str(Path(cfg.dead_letter.path) / first.run_id), str(config), "--summary", str(summary_json)]
    )
    assert r.exit_code == 3, r.output
    assert "held 4 rows before the replay and 1 after" in r.output
    got = json.loads(summary_json.read_text())
    assert (got["status"], got["sink_rows_before"], got["sink_rows_after"]) == ("failed", 4, 1)
