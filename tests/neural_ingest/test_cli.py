"""The CLI says what happened: progress and logs on stderr, results on stdout, -q, one-line errors,
input that would "succeed" silently (no file, no record, a text field no record has), exit codes."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from support import MINILM, synthetic_docs, write_jsonl

from neural_ingest.cli import main


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI installs its handler on the root logger (bound to CliRunner's stream): undo it after each test."""
    from neural_ingest.transforms.counters import Progress

    root = logging.getLogger()
    handlers, level, display = root.handlers[:], root.level, Progress.display
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    Progress.display = display  # -q sets it process-wide


@pytest.fixture(scope="module")
def _model():
    from support import hold_model

    from neural_ingest.config import parse_config

    hold_model(
        parse_config(
            {
                "source": {"type": "jsonl", "path": "x"},
                "encoder": {"type": "sentence_transformers", "model": MINILM, "device": "cpu"},
            }
        )
    )


def config(tmp_path: Path, source: dict | None = None, sink: dict | None = None, **extra) -> str:
    data = {
        "run": {"name": "cli-test", "progress_every_seconds": 0.001},
        "source": source
        or {
            "type": "jsonl",
            "path": str(write_jsonl(tmp_path / "in.jsonl", synthetic_docs(40))),
            "id_field": "id",
            "text_fields": ["title", "body"],
        },
        "encoder": {"type": "sentence_transformers", "model": MINILM, "device": "cpu", "batch_size": 8},
        "sink": sink or {"type": "parquet", "path": str(tmp_path / "dataset")},
        "dead_letter": {"path": str(tmp_path / "dlq")},
        **extra,
    }
    path = tmp_path / f"cfg-{len(list(tmp_path.glob('cfg-*')))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_progress_and_logs_on_stderr_results_on_stdout(tmp_path, _model):
    """Today the root logger sat at WARNING: no progress line at the default verbosity."""
    cfg = config(tmp_path)
    r = cli("run", cfg, "--summary", str(tmp_path / "s.json"))
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""  # a run's output is its summary, on stderr
    progress = [line for line in r.stderr.splitlines() if "progress:" in line]
    assert progress and "encoded[embedding]" in progress[0]
    assert "e+" not in r.stderr and "0000000.0/s" not in r.stderr
    assert "read" in r.stderr and "reconciles" in r.stderr  # the summary table
    s = cli("search", cfg, "note on volcanoes", "-k", "3", "--json")
    assert s.exit_code == 0, s.stderr
    assert len(json.loads(s.stdout)) == 3  # stdout is only the JSON
    assert not s.stderr.lstrip().startswith("[")  # and nothing of it on stderr


def test_quiet_prints_only_warnings_and_errors(tmp_path, _model):
    r = cli("-q", "run", config(tmp_path))
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""


def test_unreachable_host_is_one_line_without_tracebacks(tmp_path, _model):
    """Today `validate` printed ~340 lines of opensearch-py / urllib3 tracebacks around its one good line."""
    cfg = config(tmp_path, sink={"type": "opensearch", "hosts": ["http://127.0.0.1:9299"], "index": "never"})
    for command in ("validate", "run"):
        r = cli(command, cfg)
        assert r.exit_code == 2, (command, r.stderr)
        assert "Traceback" not in r.stderr and "urllib3" not in r.stderr
        errors = [line for line in r.stderr.splitlines() if "cannot reach OpenSearch at http://127.0.0.1:9299" in line]
        assert len(errors) == 1 and len(r.stderr.splitlines()) <= 4, r.stderr


def test_glob_matching_nothing_is_one_line_naming_path_and_directory(tmp_path, monkeypatch):
    """Today: `validate` said "config is valid" and `run` crashed with a 67-line Beam traceback, exit 1."""
    monkeypatch.chdir(tmp_path)
    cfg = config(tmp_path, source={"type": "jsonl", "path": "exports/*.jsonl", "text_fields": ["text"]})
    for command in ("validate", "run"):
        r = cli(command, cfg)
        assert r.exit_code == 2, (command, r.stderr)
        expected = (
            f"Error: source.path exports/*.jsonl matches no file (resolved against {tmp_path}; "
            f"directory {tmp_path / 'exports'} does not exist): check source.path"
        )
        assert r.stderr.strip().splitlines() == [expected]
    (tmp_path / "exports").mkdir()
    r = cli("run", cfg, "--summary", str(tmp_path / "s.json"))
    assert r.exit_code == 2 and f"resolved against {tmp_path})" in r.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert (s["status"], s["exit_code"]) == ("failed", 2) and "matches no file" in s["error"]


def test_text_field_present_in_no_record_is_counted_and_warned(tmp_path, _model):
    """A CSV without `body` embedded titles only, and said nothing."""
    csv = tmp_path / "in.csv"
    csv.write_text("id,title\n" + "".join(f"{i},title {i}\n" for i in range(10)))
    cfg = config(tmp_path, source={"type": "csv", "path": str(csv), "id_field": "id", "text_fields": ["title", "body"]})
    r = cli("run", cfg, "--summary", str(tmp_path / "s.json"))
    assert r.exit_code == 0, r.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["text_fields"] == {"title": 10, "body": 0}
    assert s["warnings"] == ["text field 'body' was present in none of the 10 records: check source.text_fields"]
    assert "WARNING" in r.stderr and "'body' was present in none" in r.stderr


def test_empty_input_is_reported_not_a_crash(tmp_path, _model):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cfg = config(tmp_path, source={"type": "jsonl", "path": str(empty), "text_fields": ["text"]})
    r = cli("run", cfg, "--summary", str(tmp_path / "s.json"))
    assert r.exit_code == 0, r.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["read"] == 0 and s["status"] == "succeeded"
    assert s["warnings"] == [f"the source produced no records ({empty}): empty input, nothing was indexed"]
    assert "produced no records" in r.stderr


def test_summary_records_when_what_and_how_it_ended(tmp_path, _model, monkeypatch):
    from neural_ingest import __version__

    monkeypatch.setenv("CLI_TEST_PASSWORD", "s3cret-value")
    cfg = config(tmp_path)
    r = cli("run", cfg, "--summary", str(tmp_path / "s.json"))
    assert r.exit_code == 0, r.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["started_at"].endswith("Z") and s["ended_at"] >= s["started_at"]
    assert (s["version"], s["config_path"], s["exit_code"], s["error"]) == (__version__, cfg, 0, None)
    assert len(s["config_sha256"]) == 64
    again = cli("run", cfg, "--summary", str(tmp_path / "s2.json"))
    assert json.loads((tmp_path / "s2.json").read_text())["config_sha256"] == s["config_sha256"]  # same config, same hash
    other = cli("run", cfg, "--set", "encoders.0.batch_size=4", "--summary", str(tmp_path / "s3.json"))
    assert again.exit_code == other.exit_code == 0
    assert json.loads((tmp_path / "s3.json").read_text())["config_sha256"] != s["config_sha256"]


def test_secrets_change_nothing_in_the_config_hash(tmp_path, monkeypatch):
    from neural_ingest.config import parse_config
    from neural_ingest.pipelines.ingest import config_sha256

    def sha(password: str) -> str:
        return config_sha256(
            parse_config(
                {
                    "source": {"type": "jsonl", "path": "x"},
                    "encoder": {"type": "sentence_transformers", "model": MINILM},
                    "sink": {
                        "type": "opensearch",
                        "hosts": ["http://h:9200"],
                        "index": "i",
                        "username": "u",
                        "password": password,
                    },
                }
            )
        )

    assert sha("one") == sha("two")  # only the masked value is hashed: nothing about the secret leaks


def test_a_run_that_crashes_still_writes_its_summary(tmp_path, _model, monkeypatch):
    """A bug mid-run: exit 1, one line, and the summary (status failed, the error) in JSON and on stderr."""
    from neural_ingest.transforms.prepare import PrepareFn

    def boom(self, record):  # around the per-record isolation (a bad record is a dead letter, not a crash)
        raise RuntimeError("simulated bug in prepare")

    monkeypatch.setattr(PrepareFn, "_prepare", boom)  # one record, on the per-record and the per-chunk path
    r = cli("run", config(tmp_path), "--summary", str(tmp_path / "s.json"))
    assert r.exit_code == 1
    s = json.loads((tmp_path / "s.json").read_text())
    assert (s["status"], s["exit_code"]) == ("failed", 1)
    assert "simulated bug in prepare" in s["error"] and s["ended_at"]
    assert "(failed)" in r.stderr and "ERROR" in r.stderr  # the summary table
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: internal error: RuntimeError") and "please report it" in last
    assert "Traceback" not in r.stderr


BAD = {"source": {"type": "jsonl", "path": "x"}, "sink": {"type": "parquet", "path": "y", "no_such_key": 1}}


@pytest.mark.parametrize(
    "args",
    [
        ["run", "{cfg}"],
        ["validate", "{cfg}"],
        ["search", "{cfg}", "q"],
        ["dlq", "replay", "{dir}", "{cfg}"],
        ["reindex", "{cfg}"],
        ["reindex", "{cfg}", "--dry-run"],
        ["rollback", "{cfg}"],
        ["models", "register", "{cfg}"],
    ],
)
def test_a_bad_config_exits_2_with_one_line_on_every_command(tmp_path, args):
    """Today `reindex` / `rollback` config errors exited 1, where the docs and the CronJob's podFailurePolicy say 2."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(BAD))
    r = cli(*[a.format(cfg=cfg, dir=tmp_path) for a in args])
    assert r.exit_code == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("Error: ") and "no_such_key" in r.stderr and "Traceback" not in r.stderr


def test_readme_documents_every_exit_code():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("### Exit codes") :]
    for code in ("| 0 ", "| 1 ", "| 2 ", "| 3 ", "| 4 ", "| 5 "):
        assert code in table
    for command in ("run", "search", "validate", "dlq replay", "reindex", "rollback", "models"):
        assert f"`{command}`" in table
    assert os.path.exists(Path(__file__).resolve().parents[2] / "neural_ingest" / "exit_codes.py")


def test_a_failed_bulk_retry_is_one_warning_line_without_traceback(capsys):
    """Today each retry against a down node printed opensearch-py's and urllib3's tracebacks (a 45 s
    outage: ~2,400 lines). A real refused connection (nothing listens on 127.0.0.1:9299)."""
    from neural_ingest.cli.logs import setup_logging as _setup_logging
    from neural_ingest.config import OpenSearchSinkConfig
    from neural_ingest.sinks.bulk import BulkWriter, make_item
    from neural_ingest.sinks.opensearch_client import make_client

    _setup_logging(verbose=False)
    cfg = OpenSearchSinkConfig(
        hosts=["http://127.0.0.1:9299"], index="never", bulk={"outage_deadline": 0.2, "initial_backoff": 0.01}
    )
    writer = BulkWriter(make_client(cfg), cfg.bulk, sleep=lambda s: None)
    results = list(writer.write([make_item(1, "never", "1", {"text": "t"})]))
    assert [r.error_type for r in results] == ["unavailable"]
    lines = capsys.readouterr().err.splitlines()
    assert writer.retried_requests >= 1 and len(lines) == writer.retried_requests, lines[:20]
    assert all("WARNING bulk request of 1 docs failed (ConnectionError); retrying for up to" in line for line in lines)


# ---------------------------------------------------------------------------------------------- search: what a user sees
def one_error_line(r) -> str:
    """The whole of stderr is one `Error: ...` line: no usage text, no traceback."""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert "Traceback" not in r.stderr and "Usage:" not in r.stderr
    return lines[0]


@pytest.mark.parametrize("k", ["-3", "0"])
def test_search_k_below_one_is_one_line_on_parquet_and_opensearch(tmp_path, opensearch_url, k):
    """Today Parquet `-k -3` returned 297 hits (numpy's [:-3]) and OpenSearch answered HTTP 400 (exit 1, "a bug")."""
    for sink in (
        {"type": "parquet", "path": str(tmp_path / "dataset")},
        {"type": "opensearch", "hosts": [opensearch_url], "index": "never-searched"},
    ):
        r = cli("search", config(tmp_path, sink=sink), "volcanoes", "-k", k, "--json")
        assert r.exit_code == 2 and r.stdout == ""
        assert one_error_line(r) == f"Error: Invalid value for '-k': {k} is not in the range x>=1."


def test_search_k_above_what_opensearch_returns_is_one_line(tmp_path, opensearch_url):
    from neural_ingest.cli import KNN_MAX_K
    from neural_ingest.config.sinks import KNN_MAX_K as CONFIG_MAX

    assert KNN_MAX_K == CONFIG_MAX  # the CLI's copy (it imports no config at start-up) is the config's
    cfg = config(tmp_path, sink={"type": "opensearch", "hosts": [opensearch_url], "index": "never-searched"})
    r = cli("search", cfg, "volcanoes", "-k", str(KNN_MAX_K + 1))
    assert r.exit_code == 2
    assert one_error_line(r) == (
        f"Error: Invalid value for '-k': {KNN_MAX_K + 1} is more than OpenSearch returns for one "
        f"query (10,000): use -k {KNN_MAX_K} or less"
    )


def test_search_on_a_missing_index_is_one_line_naming_it_and_the_fix(tmp_path, opensearch_url, index_name):
    """Today: `Error: internal error: NotFoundError(404, 'index_not_found_exception', ...) (a bug: please report it)`, exit 1."""
    cfg = config(tmp_path, sink={"type": "opensearch", "hosts": [opensearch_url], "index": index_name})
    for extra in ([], ["--json"], ["--mode", "sparse"]):
        r = cli("search", cfg, "volcanoes", *extra)
        assert r.exit_code == 2 and r.stdout == ""
        assert one_error_line(r) == (
            f"Error: index or alias {index_name!r} does not exist at {opensearch_url}: check sink.index, or build it with "
            "`neural-ingest run CONFIG` (`neural-ingest reindex CONFIG` for an alias)"
        )


def test_search_on_a_missing_dataset_is_one_line_naming_it_and_the_fix(tmp_path):
    r = cli("search", config(tmp_path), "volcanoes")
    assert r.exit_code == 2
    assert one_error_line(r) == (
        f"Error: no Parquet dataset at {tmp_path / 'dataset'}: check sink.path, or build it with `neural-ingest run CONFIG`"
    )


def test_search_with_no_hits_says_so_in_one_line_and_prints_empty_json(tmp_path, opensearch_url, index_name, os_client, _model):
    """Today an empty Parquet dataset (a run over an empty file) failed with "cannot reshape array of size 0", and an
    empty index printed an empty table."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    parquet = config(tmp_path, source={"type": "jsonl", "path": str(empty), "text_fields": ["text"]})
    assert cli("-q", "run", parquet).exit_code == 0  # a real, empty dataset
    os_client.indices.create(index=index_name)
    opensearch = config(tmp_path, sink={"type": "opensearch", "hosts": [opensearch_url], "index": index_name})
    for cfg, where in ((parquet, f"parquet {tmp_path / 'dataset'}"), (opensearch, f"opensearch {opensearch_url}/{index_name}")):
        expected = [f"no hits for 'volcanoes': {where} holds no documents: run `neural-ingest run CONFIG` first"]
        r = cli("search", cfg, "volcanoes", "--json")
        assert (r.exit_code, r.stdout, r.stderr.strip().splitlines()) == (0, "[]\n", expected)
        r = cli("search", cfg, "volcanoes")
        assert (r.exit_code, r.stdout, r.stderr.strip().splitlines()) == (0, "", expected)  # no empty table


def test_search_k_keeps_its_meaning_on_a_built_dataset(tmp_path, _model):
    """Today `-k -3` on this 40-document dataset printed 37 hits."""
    cfg = config(tmp_path)
    assert cli("-q", "run", cfg).exit_code == 0
    r = cli("search", cfg, "volcanoes", "-k", "-3", "--json")
    assert r.exit_code == 2 and r.stdout == "" and one_error_line(r).startswith("Error: Invalid value for '-k': -3")
    for k in ("1", "5", "40", "10000"):
        r = cli("search", cfg, "volcanoes", "-k", k, "--json")
        assert r.exit_code == 0 and len(json.loads(r.stdout)) == min(int(k), 40) and r.stderr == ""


# ---------------------------------------------------------------------------------------------- shell completion
def test_completion_offers_commands_options_and_choices():
    from click.shell_completion import BashComplete

    from neural_ingest.cli import COMPLETE_VAR, PROG

    comp = BashComplete(main, {}, PROG, COMPLETE_VAR)
    assert [c.value for c in comp.get_completions([], "se")] == ["search"]
    assert {"init", "completion", "run", "validate", "reindex"} <= {c.value for c in comp.get_completions([], "")}
    assert [c.value for c in comp.get_completions(["search", "c.yaml", "q", "--mode"], "h")] == ["hybrid"]
    assert [c.value for c in comp.get_completions(["init", "--sink"], "")] == ["parquet", "opensearch", "hybrid"]
    assert [c.type for c in comp.get_completions(["run"], "")] == ["file"]  # CONFIG completes file names


def test_completion_variable_is_the_console_scripts():
    """click derives the variable from the program name: the entry point in pyproject must be PROG."""
    import tomllib

    from neural_ingest.cli import COMPLETE_VAR, PROG

    scripts = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {PROG: "neural_ingest.cli:main"}
    assert "_" + PROG.replace("-", "_").upper() + "_COMPLETE" == COMPLETE_VAR


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_command_prints_clicks_script(shell):
    import subprocess
    import sys

    r = cli("completion", shell)
    assert r.exit_code == 0 and "_NEURAL_INGEST_COMPLETE" in r.stdout and "neural-ingest" in r.stdout
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "_NEURAL_INGEST_COMPLETE": f"{shell}_source"}
    direct = subprocess.run(
        [sys.executable, "-m", "neural_ingest.cli"], check=False, env=env, capture_output=True, text=True, timeout=120
    )
    assert direct.returncode == 0 and direct.stdout == r.stdout  # the same script as click's own variable gives


def test_completion_without_a_known_shell_is_one_line(monkeypatch):
    monkeypatch.setenv("SHELL", "/bin/tcsh")
    r = cli("completion")
    assert r.exit_code == 2
    assert one_error_line(r) == "Error: cannot tell the shell from $SHELL (tcsh): name it, e.g. neural-ingest completion bash"


def test_completion_in_a_real_bash(tmp_path):
    """The script, sourced by bash, completes `neural-ingest se` to `search` by calling the program itself."""
    import shutil
    import subprocess
    import sys

    bash = shutil.which("bash")
    assert bash, "bash is needed for this test"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "neural-ingest"  # the console script's name, running this checkout
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m neural_ingest.cli "$@"\n')
    exe.chmod(0o755)
    script = (
        "source <(neural-ingest completion bash)\n"
        'COMP_WORDS=(neural-ingest se); COMP_CWORD=1; _neural_ingest_completion neural-ingest; echo "${COMPREPLY[*]}"\n'
        "COMPREPLY=(); COMP_WORDS=(neural-ingest search c.yaml q --mode h); COMP_CWORD=5\n"
        '_neural_ingest_completion neural-ingest; echo "${COMPREPLY[*]}"\n'
    )
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "HOME": str(tmp_path)}
    r = subprocess.run(
        [bash, "--norc", "--noprofile", "-c", script], check=False, env=env, capture_output=True, text=True, timeout=120
    )
    assert (r.returncode, r.stdout.splitlines()) == (0, ["search", "hybrid"]), r.stderr
