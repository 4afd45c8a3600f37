"""`neural-ingest init`: a commented starter config for each sink, valid as written (loaded by the config's own
validation, and `validate` passing with the real model), never overwriting a file without --force."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from support import MINILM, ROOT, SAMPLE

from neural_ingest.cli import main
from neural_ingest.cli.init import SINKS


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI installs its handler on the root logger: undo it after each test (as tests/neural_ingest/test_cli.py)."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.parametrize("sink", SINKS)
def test_init_writes_a_commented_config_the_validation_accepts(tmp_path, monkeypatch, sink):
    from neural_ingest.config import load_config

    monkeypatch.delenv("OPENSEARCH_URL", raising=False)
    out = tmp_path / "conf" / "ni.yaml"
    r = cli("init", "--sink", sink, "-o", str(out))
    assert r.exit_code == 0, r.stderr
    assert r.stdout == f"wrote {out} (sink {sink}); next: neural-ingest validate {out}\n"
    text = out.read_text()
    cfg = load_config(out)
    assert cfg.sink.type == ("parquet" if sink == "parquet" else "opensearch")
    assert [e.kind for e in cfg.encoders] == (["dense", "sparse"] if sink == "hybrid" else ["dense"])
    assert cfg.encoders[0].model == MINILM
    if sink != "parquet":
        assert cfg.sink.hosts == ["http://127.0.0.1:9200"] and cfg.sink.password.get_secret_value() == ""
        assert '"${OPENSEARCH_URL:-http://127.0.0.1:9200}"' in text and "${OPENSEARCH_PASSWORD:-}" in text
        monkeypatch.setenv("OPENSEARCH_URL", "https://node.example:9443")
        assert load_config(out).sink.hosts == ["https://node.example:9443"]
    # every value line says what it is for
    values = [line for line in text.splitlines() if re.match(r"^\s*(- )?[a-z_]+: \S", line)]
    assert values and all("#" in line for line in values), [line for line in values if "#" not in line]


def test_init_options_reach_the_config(tmp_path):
    from neural_ingest.config import load_config

    csv = tmp_path / "in.csv"
    csv.write_text("id,title,body\n1,a,b\n")
    out = tmp_path / "c.yaml"
    r = cli("init", "--sink", "opensearch", "--model", "all-mpnet-base-v2", "--source", str(csv), "--index", "my-docs",
            "-o", str(out))
    assert r.exit_code == 0, r.stderr
    cfg = load_config(out)
    assert (cfg.source.type, cfg.source.path, cfg.sink.index, cfg.encoders[0].model) == ("csv", str(csv), "my-docs",
                                                                                         "all-mpnet-base-v2")
    r = cli("init", "-o", "-", "--sink", "hybrid", "--sparse-model", "opensearch-neural-sparse-encoding-v1")
    assert r.exit_code == 0 and yaml.safe_load(r.stdout)["encoders"][1]["model"] == "opensearch-neural-sparse-encoding-v1"


@pytest.mark.parametrize("args, expect", [
    (["--model", "opensearch-neural-sparse-encoding-doc-v1"],
     ("Error: --model opensearch-neural-sparse-encoding-doc-v1: a sparse model; give it with --sparse-model, and a dense "
      "model here (`neural-ingest models list`)")),
    (["--sink", "hybrid", "--sparse-model", "all-MiniLM-L6-v2"],
     ("Error: --sparse-model all-MiniLM-L6-v2: a dense model; give it with --model, and a sparse model here "
      "(`neural-ingest models list`)")),
    (["--sink", "opensearch", "--index", "Docs"], "Error: the options give an invalid config: "),
    (["--source", "exports/data.xml"], ("Error: --source exports/data.xml: cannot tell the format from its name: use a "
                                        "path ending in .jsonl, .json, .ndjson, .csv, .parquet, .txt")),
    (["--sink", "sqlite"], "Error: Invalid value for '--sink': 'sqlite' is not one of 'parquet', 'opensearch', 'hybrid'."),
])
def test_init_bad_options_are_one_line(tmp_path, args, expect):
    r = cli("init", *args, "-o", str(tmp_path / "c.yaml"))
    assert r.exit_code == 2 and not (tmp_path / "c.yaml").exists()
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expect), r.stderr


def test_init_never_overwrites_without_force(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("neural-ingest.yaml").write_text("# mine\n")
    r = cli("init")
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [
        "Error: neural-ingest.yaml exists: pass --force to overwrite it, or choose another path with -o"
    ]
    assert Path("neural-ingest.yaml").read_text() == "# mine\n"
    r = cli("init", "--force")
    assert r.exit_code == 0 and Path("neural-ingest.yaml").read_text().startswith("# neural-ingest starter config")


def test_validate_passes_on_the_starters_with_the_real_model(tmp_path, opensearch_url, index_name):
    """As a user runs it: `init` then `validate` in a fresh directory, in a process of its own, the source relative;
    the OpenSearch starter pointed at the test node (not on 9200) by OPENSEARCH_URL alone."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "docs.jsonl").write_text((SAMPLE / "docs.jsonl").read_text())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "neural_ingest.cli", *args], cwd=tmp_path, env=env, check=False,
                              capture_output=True, text=True, timeout=600)

    assert run("init", "--source", "data/docs.jsonl").returncode == 0
    r = run("validate", "neural-ingest.yaml")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"source ok: jsonl data/docs.jsonl: 1 file(s), {(SAMPLE / 'docs.jsonl').stat().st_size:,} bytes",
        "model ok: huggingface/sentence-transformers/all-MiniLM-L6-v2 -> field 'embedding' (dense, dim=384, space=cosinesimil)",
        "sink ok: parquet .neural-ingest/dataset",
        "config is valid",
    ]

    assert (
        run("init", "--sink", "opensearch", "--source", "data/docs.jsonl", "--index", index_name, "-o", "os.yaml").returncode == 0
    )
    env["OPENSEARCH_URL"] = opensearch_url
    r = run("validate", "os.yaml")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-2:] == [f"sink ok: opensearch {opensearch_url}/{index_name}", "config is valid"]


@given(
    model=st.text(min_size=1, max_size=60),
    source=st.text(min_size=1, max_size=40).map(lambda s: s + ".jsonl"),
    index=st.text(min_size=1, max_size=30),
)
@settings(max_examples=300, deadline=None)
def test_any_option_text_reaches_the_yaml_unchanged(model, source, index):
    """Option values are user text put into YAML: quoting must carry every one back exactly (': ', '#', quotes,
    newlines, leading '-' or '*', 'null', 'yes', numbers, non-ASCII)."""
    from neural_ingest.cli.init import starter_config

    data = yaml.safe_load(starter_config("hybrid", model=model, sparse_model=model, source=source, index=index))
    assert data["encoders"][0]["model"] == data["encoders"][1]["model"] == model
    assert (data["source"]["path"], data["sink"]["index"]) == (source, index)
