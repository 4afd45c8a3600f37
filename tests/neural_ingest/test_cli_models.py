"""`neural-ingest models list|show`: the page's 12 models, with every field the issue asks for."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from neural_ingest.cli import main

PAGE = (Path(__file__).resolve().parents[1] / "reference" / "opensearch-pretrained-models.md").read_text()
PAGE_NAMES = re.findall(r"^\| `([^`]+)` \|", PAGE, flags=re.M)
FIELDS = {"name", "kind", "dimension", "space_type", "pooling", "normalized", "max_seq_length", "auto_truncation",
          "function_name", "version", "formats"}


def _run(*args: str):
    return CliRunner().invoke(main, ["models", *args])


def test_list_json_is_the_pages_twelve_models_by_name():
    result = _run("list", "--json")
    assert result.exit_code == 0, result.output
    models = json.loads(result.output)
    assert len(PAGE_NAMES) == 12
    assert [m["name"] for m in models] == PAGE_NAMES
    for m in models:
        assert set(m) >= FIELDS
        assert m["kind"] in ("dense", "sparse")
        assert m["function_name"] in ("TEXT_EMBEDDING", "SPARSE_ENCODING", "SPARSE_TOKENIZE")
        for f in m["formats"]:
            assert f["model_url"].startswith("https://artifacts.opensearch.org/") and f["model_url"].endswith(".zip")
            assert f["config_url"].endswith("/config.json")
        if m["kind"] == "dense":
            assert isinstance(m["dimension"], int) and m["space_type"] in ("cosinesimil", "innerproduct")
        else:
            assert m["dimension"] is None and m["space_type"] is None


def test_list_table_names_every_model():
    result = _run("list")
    assert result.exit_code == 0
    for name in PAGE_NAMES:
        assert name in result.output


@pytest.mark.parametrize(
    "name, expect",
    [
        ("huggingface/sentence-transformers/multi-qa-mpnet-base-dot-v1",
         {"dimension": 768, "space_type": "innerproduct", "pooling": "cls", "normalized": False}),
        ("all-MiniLM-L6-v2", {"dimension": 384, "space_type": "cosinesimil", "max_seq_length": 256, "version": "1.0.1"}),
        ("opensearch-neural-sparse-encoding-doc-v1",
         {"kind": "sparse", "function_name": "SPARSE_ENCODING", "max_seq_length": 512, "version": "1.0.0",
          "model_content_hash_value": "9a41adb6c13cf49a7e3eff91aef62ed5035487a6eca99c996156d25be2800a9a"}),
        ("opensearch-neural-sparse-tokenizer-v1", {"function_name": "SPARSE_TOKENIZE", "kind": "sparse"}),
    ],
)
def test_show_json(name, expect):
    result = _run("show", name, "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert set(got) >= FIELDS
    assert {k: got[k] for k in expect} == expect


def test_show_text_lists_urls_corrections_and_the_mapping():
    result = _run("show", "all-MiniLM-L12-v2")
    assert result.exit_code == 0
    assert "torch_script/config.json" in result.output and "correction" in result.output
    assert '"dimension": 384' in result.output and '"space_type": "cosinesimil"' in result.output


def test_show_unknown_model_is_a_user_error():
    result = _run("show", "bert-base-uncased")
    assert result.exit_code == 2
    assert "not in the model catalogue" in result.output and "all-MiniLM-L6-v2" in result.output
