"""Secrets and TLS as a user meets them on the command line (`neural-ingest validate` / `run` in a
subprocess): a password in a host URL appears nowhere, --set problems are one line, and TLS settings
say what is wrong (verify_certs off, a missing CA bundle, https:// against a plain-HTTP node)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support import MINILM, ROOT, SAMPLE

SECRET = "s3cretPW-4711"


def cli(*args: str, cwd: Path) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    r = subprocess.run([sys.executable, "-m", "neural_ingest.cli", *args], capture_output=True, text=True, cwd=cwd,
                       env=env, timeout=600)
    return r.returncode, r.stdout + r.stderr


def write_config(tmp_path: Path, host: str, index: str = "never-created", **sink) -> Path:
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join((SAMPLE / "docs.jsonl").read_text().splitlines(keepends=True)[:3]))
    cfg = {
        "run": {"name": "secrets"},
        "source": {"type": "jsonl", "path": str(docs), "text_fields": ["title", "body"]},
        "encoder": {"type": "sentence_transformers", "model": MINILM, "device": "cpu"},
        "sink": {"type": "opensearch", "hosts": [host], "index": index, **sink},
        "dead_letter": {"path": str(tmp_path / "dlq")},
    }
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def test_unreachable_host_with_password_is_shown_redacted(tmp_path):
    port = closed_port()
    conf = write_config(tmp_path, f"http://user:{SECRET}@127.0.0.1:{port}")
    for cmd in (["validate"], ["-v", "run"]):
        rc, out = cli(*cmd, str(conf), cwd=tmp_path)
        assert rc == 2, out[-3000:]
        assert SECRET not in out
        assert f"cannot reach OpenSearch at http://user:***@127.0.0.1:{port}: check sink.hosts" in out


def test_password_in_host_url_absent_from_validate_run_and_summary(opensearch_url, index_name, tmp_path):
    host = opensearch_url.replace("http://", f"http://user:{SECRET}@")  # the test node has no security: any user works
    conf = write_config(tmp_path, host, index_name)
    shown = f"opensearch {opensearch_url.replace('http://', 'http://user:***@')}/{index_name}"
    rc, out = cli("validate", str(conf), cwd=tmp_path)
    assert rc == 0, out[-3000:]
    assert f"sink ok: {shown}" in out and SECRET not in out
    rc, out = cli("run", str(conf), "--summary", str(tmp_path / "s.json"), cwd=tmp_path)
    summary = (tmp_path / "s.json").read_text()
    assert rc == 0, out[-3000:]
    assert json.loads(summary)["sink"] == shown and json.loads(summary)["indexed"] == 3
    assert SECRET not in out and SECRET not in summary


def test_https_against_a_plain_http_node_says_so(opensearch_url, tmp_path):
    host = opensearch_url.replace("http://", f"https://user:{SECRET}@")
    conf = write_config(tmp_path, host)
    rc, out = cli("validate", str(conf), cwd=tmp_path)
    assert rc == 2, out[-3000:]
    plain = opensearch_url.replace("http://", "http://user:***@")
    [line] = lines_with(out, "speaks plain HTTP")
    assert f"sink.hosts: {host.replace(SECRET, '***')} speaks plain HTTP, not TLS: use {plain}" in line
    assert "ca_certs" not in out and SECRET not in out


def test_missing_ca_certs_is_named(tmp_path):
    conf = write_config(tmp_path, "https://127.0.0.1:9200", ca_certs=str(tmp_path / "no-such-ca.pem"))
    rc, out = cli("validate", str(conf), cwd=tmp_path)
    assert rc == 2, out[-3000:]
    [line] = lines_with(out, "sink.ca_certs:")
    assert f"sink.ca_certs: {tmp_path / 'no-such-ca.pem'} does not exist" in line


def test_verify_certs_false_warns_on_every_command(opensearch_url, tmp_path):
    conf = write_config(tmp_path, opensearch_url, verify_certs=False)
    rc, out = cli("validate", str(conf), cwd=tmp_path)
    assert rc == 0, out[-3000:]
    assert len(lines_with(out, "sink.verify_certs is false")) == 1


@pytest.mark.parametrize("item, expect", [
    (f"sink.bulk.max_docs=[{SECRET}", "--set sink.bulk.max_docs: the value is not valid YAML"),
    ("encoders.3.x=1", "--set encoders.3.x: encoders has 1 item"),
    ("source.text_fields.x=1", "--set source.text_fields.x: source.text_fields is a list"),
    ("sink.index.x=1", "--set sink.index.x: sink.index is a text value, not a section"),
])
def test_set_errors_are_one_line_without_the_value(item, expect, tmp_path):
    conf = write_config(tmp_path, "http://127.0.0.1:9200")
    rc, out = cli("validate", str(conf), "--set", item, cwd=tmp_path)
    assert rc != 0 and "Traceback" not in out, out[-3000:]
    assert out.strip() == f"Error: {out.strip().removeprefix('Error: ')}" and "\n" not in out.strip(), out
    assert expect in out and SECRET not in out


def test_a_password_with_yaml_syntax_is_taken_verbatim(tmp_path):
    port = closed_port()
    conf = write_config(tmp_path, f"http://127.0.0.1:{port}", username="admin")
    rc, out = cli("validate", str(conf), "--set", f"sink.password=[{SECRET}", cwd=tmp_path)
    assert rc == 2 and "cannot reach OpenSearch" in out, out[-3000:]  # the config was valid; the node is not there
    assert SECRET not in out
