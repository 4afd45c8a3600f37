"""Config paths are made absolute for workers that run in another directory (Flink, Dataflow, ...)."""
from __future__ import annotations

import os

from support import MINILM

from neural_ingest.config import parse_config
from neural_ingest.distributed import absolute_paths


def _cfg(**sink):
    return parse_config(
        {
            "source": {"type": "jsonl", "path": "data/*.jsonl"},
            "encoder": {"type": "sentence_transformers", "model": MINILM, "model_path": "models/minilm"},
            "sink": sink or {"type": "parquet", "path": "out/ds"},
            "dead_letter": {"path": ".neural-ingest/dlq"},
        }
    )


def test_relative_local_paths_become_absolute(tmp_path):
    cfg = absolute_paths(_cfg(), base=str(tmp_path))
    assert cfg.source.path == str(tmp_path / "data" / "*.jsonl")
    assert cfg.sink.path == str(tmp_path / "out" / "ds")
    assert cfg.dead_letter.path == str(tmp_path / ".neural-ingest" / "dlq")
    assert cfg.encoders[0].model_path == str(tmp_path / "models" / "minilm")
    assert cfg.encoders[0].model == MINILM  # a catalogue name, not a directory here: kept


def test_urls_and_absolute_paths_are_kept(tmp_path):
    cfg = _cfg(type="opensearch", hosts=["http://127.0.0.1:9200"], index="x", ca_certs="/etc/ca.pem")
    cfg = cfg.model_copy(update={"source": cfg.source.model_copy(update={"path": "gs://bucket/docs/*.jsonl"})})
    out = absolute_paths(cfg, base=str(tmp_path))
    assert out.source.path == "gs://bucket/docs/*.jsonl"
    assert out.sink.ca_certs == "/etc/ca.pem" and out.sink.hosts == ["http://127.0.0.1:9200"]


def test_model_directory_given_as_model_is_resolved(tmp_path):
    (tmp_path / "my-model").mkdir()
    cfg = parse_config({"source": {"type": "jsonl", "path": "/abs/d.jsonl"},
                        "encoder": {"type": "sentence_transformers", "model": "my-model"}})
    assert absolute_paths(cfg, base=str(tmp_path)).encoders[0].model == str(tmp_path / "my-model")


def test_default_base_is_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_paths(_cfg()).source.path == os.path.join(str(tmp_path), "data", "*.jsonl")


def test_flink_config_carries_the_runner(monkeypatch):
    """configs/flink.yaml: the Beam options in the config itself, with the endpoints from the environment."""
    from apache_beam.options.pipeline_options import FlinkRunnerOptions, PipelineOptions, PortableOptions, StandardOptions
    from support import ROOT

    from neural_ingest.config import load_config

    monkeypatch.setenv("FLINK_MASTER", "flink:8081")
    monkeypatch.delenv("BEAM_JOB_ENDPOINT", raising=False)
    opts = PipelineOptions(load_config(ROOT / "configs" / "flink.yaml").beam_args)
    assert opts.view_as(StandardOptions).runner == "FlinkRunner"
    assert opts.view_as(FlinkRunnerOptions).flink_master == "flink:8081"
    assert opts.view_as(FlinkRunnerOptions).flink_version == "1.19"
    portable = opts.view_as(PortableOptions)
    assert portable.job_endpoint == "127.0.0.1:8099" and portable.environment_type == "EXTERNAL"
