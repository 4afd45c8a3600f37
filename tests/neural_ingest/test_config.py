from __future__ import annotations

import pytest

from neural_ingest.config import ConfigError, OpenSearchSinkConfig, load_config

BASE = """
source: {type: jsonl, path: docs.jsonl, text_fields: [title, body]}
encoder: {type: sentence_transformers, model: all-MiniLM-L6-v2}
sink:
  type: opensearch
  index: docs
  hosts: ["${OS_URL:-http://127.0.0.1:9200}"]
  username: admin
  password: ${OS_PASSWORD}
"""


def write(tmp_path, text: str):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_env_interpolation_with_default_and_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("OS_PASSWORD", "s3cr3t-pw")
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.sink.hosts == ["http://127.0.0.1:9200"]
    assert cfg.sink.password.get_secret_value() == "s3cr3t-pw"
    # The secret never shows up when the config is printed or dumped.
    assert "s3cr3t-pw" not in repr(cfg)
    assert "s3cr3t-pw" not in cfg.model_dump_json()


def test_missing_env_names_field_and_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("OS_PASSWORD", raising=False)
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, BASE))
    assert "sink.password" in str(e.value) and "export OS_PASSWORD" in str(e.value)


def test_overrides_are_typed_and_reach_lists(tmp_path, monkeypatch):
    monkeypatch.setenv("OS_PASSWORD", "x")
    cfg = load_config(write(tmp_path, BASE), ["encoders.0.batch_size=64", "sink.knn.engine=faiss", "sink.index=other"])
    assert cfg.encoders[0].batch_size == 64
    assert cfg.sink.knn.engine == "faiss"
    assert cfg.sink.index == "other"


def test_unknown_and_missing_fields_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("OS_PASSWORD", "x")
    text = BASE.replace("type: jsonl,", "type: jsonl, bogus: 1,").replace("  index: docs\n", "")
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    msg = str(e.value)
    assert "source.bogus: unknown field" in msg
    assert "sink.index: required field is missing" in msg


def test_nmslib_is_not_offered(tmp_path, monkeypatch):
    monkeypatch.setenv("OS_PASSWORD", "x")
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, BASE), ["sink.knn.engine=nmslib"])
    assert "sink.knn.engine" in str(e.value)


@pytest.mark.parametrize("name", ["Docs", "_docs", "a b", "x*y"])
def test_bad_index_names_rejected(name):
    with pytest.raises(ValueError):
        OpenSearchSinkConfig(index=name)


def test_bad_override_syntax(tmp_path, monkeypatch):
    monkeypatch.setenv("OS_PASSWORD", "x")
    with pytest.raises(ConfigError, match=r"key.path=value"):
        load_config(write(tmp_path, BASE), ["no-equals-sign"])
