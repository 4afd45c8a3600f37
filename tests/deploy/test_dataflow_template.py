"""deploy/dataflow: the Flex Template spec is well-formed and its entry point runs the pipeline
(here on DirectRunner, with the config read through Beam's filesystems as on Dataflow)."""
from __future__ import annotations

import importlib.util
import json

import pyarrow.parquet as pq
import yaml

from support import ROOT, SAMPLE, write_jsonl

DATAFLOW = ROOT / "deploy" / "dataflow"


def _main():
    spec = importlib.util.spec_from_file_location("dataflow_main", DATAFLOW / "main.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_flex_template_spec():
    spec = json.loads((DATAFLOW / "flex-template.json").read_text())
    assert spec["sdkInfo"]["language"] == "PYTHON" and spec["image"]
    params = {p["name"]: p for p in spec["metadata"]["parameters"]}
    assert set(params) == {"config", "overrides", "summary"}
    assert not params["config"].get("isOptional") and params["overrides"]["isOptional"]
    # every template parameter is an option the entry point understands
    args, rest = _main().parse(["--config=gs://b/c.yaml", "--overrides=a=1;b=2", "--summary=gs://b/s.json", "--runner=DataflowRunner"])
    assert args.config == "gs://b/c.yaml" and rest == ["--runner=DataflowRunner"]
    dockerfile = (DATAFLOW / "Dockerfile").read_text()
    assert "FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py" in dockerfile and "/opt/apache/beam/boot" in dockerfile


def test_entry_point_runs_the_pipeline(tmp_path):
    docs = [json.loads(line) for line in (SAMPLE / "docs.jsonl").read_text().splitlines()[:12]]
    source = write_jsonl(tmp_path / "docs.jsonl", docs)
    config = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    config["encoder"]["device"] = "cpu"
    (tmp_path / "ingest.yaml").write_text(yaml.safe_dump(config))
    rc = _main().main([
        f"--config={tmp_path / 'ingest.yaml'}",
        f"--overrides=source.path={source}; sink.path={tmp_path / 'ds'} ;dead_letter.path={tmp_path / 'dlq'}",
        f"--summary={tmp_path / 'summary.json'}",
        "--runner=DirectRunner",
    ])
    assert rc == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["read"] == summary["indexed"] == 12 and summary["reconciles"]
    assert pq.read_table(tmp_path / "ds").num_rows == 12
