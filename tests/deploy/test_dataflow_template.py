"""deploy/dataflow: the Flex Template spec's parameters are the entry point's options; the entry point
runs the pipeline (here on DirectRunner, with the config read through Beam's filesystems as on
Dataflow) and returns the CLI's exit code; on Dataflow it submits the job and returns without waiting,
the job itself finishing the run (finalize, summary, error budget); the Dockerfile pins its bases and
torch and passes hadolint."""
from __future__ import annotations

import importlib.util
import json
import re

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
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
    assert spec["defaultEnvironment"]["sdkContainerImage"] == spec["image"]  # launcher and workers: one image
    params = {p["name"]: p for p in spec["metadata"]["parameters"]}
    # the template's parameters are exactly the entry point's own options, required where it requires them
    main = _main()
    parser_actions = [a for a in _parser(main)._actions if a.option_strings and a.dest != "help"]
    options = {a.dest: a for a in parser_actions}
    assert set(params) == set(options)
    for name, p in params.items():
        assert bool(p.get("isOptional")) is not options[name].required, name
        assert p["label"] and p["helpText"]
        for example in re.findall(r"e\.g\. (\S+?)[.,;)]?(?:\s|$)", p["helpText"]):
            for rx in p.get("regexes", []):
                assert re.match(rx, example), (name, example, rx)
    args, rest = main.parse(
        ["--config=gs://b/c.yaml", "--overrides=a=1;b=2", "--summary=gs://b/s.json", "--runner=DataflowRunner"]
    )
    assert args.config == "gs://b/c.yaml" and rest == ["--runner=DataflowRunner"]
    dockerfile = (DATAFLOW / "Dockerfile").read_text()
    assert (
        "FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py" in dockerfile and "COPY deploy/dataflow/main.py ./main.py" in dockerfile
    )
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in dockerfile


def _parser(main):
    """The entry point's argparse parser (parse() builds it; captured, not rebuilt)."""
    import argparse

    seen = []
    real = argparse.ArgumentParser.parse_known_args

    def spy(self, *a, **kw):
        seen.append(self)
        return real(self, *a, **kw)

    argparse.ArgumentParser.parse_known_args = spy
    try:
        main.parse(["--config=x.yaml"])
    finally:
        argparse.ArgumentParser.parse_known_args = real
    return seen[0]


def test_dockerfile_pins_bases_and_torch():
    text = (DATAFLOW / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.MULTILINE))
    for image in re.findall(r"^FROM (\S+)", text, re.MULTILINE):
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.search(r":[\w.-]+$", resolved) and not resolved.endswith(":latest"), image
    # the torch and Beam the project tests with (scripts/setup-env.sh, deploy/Dockerfile)
    assert f"TORCH_VERSION:-{args['TORCH_VERSION']}" in (ROOT / "scripts" / "setup-env.sh").read_text()
    assert '"torch==${TORCH_VERSION}"' in text and '--index-url "${TORCH_INDEX_URL}"' in text
    assert f"ARG BEAM_VERSION={args['BEAM_VERSION']}" in (ROOT / "deploy" / "Dockerfile").read_text()
    assert '"apache-beam[gcp]==${BEAM_VERSION}"' in text  # pip must not move the SDK image's Beam
    # every path copied from the build context is let through the .dockerignore
    ignore = (DATAFLOW / "Dockerfile.dockerignore").read_text().splitlines()
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.MULTILINE):
        for src in line.split()[:-1]:
            assert (ROOT / src).exists(), src
            assert f"!{src}" in ignore or f"!{src}/" in ignore, f"{src} is excluded by Dockerfile.dockerignore"


def test_launches_on_dataflow_only():
    from neural_ingest.config import load_config

    main = _main()
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    assert main.launches(["--runner=DataflowRunner", "--project=p"], cfg)
    assert main.launches(["--runner", "DataflowRunner"], cfg)
    assert main.launches(["--template_location=gs://b/t.json"], cfg)
    assert not main.launches(["--runner=DirectRunner"], cfg) and not main.launches([], cfg)


def _config(tmp_path, docs, **run) -> str:
    config = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    config["encoder"]["device"] = "cpu"
    config.setdefault("run", {}).update(run)
    path = tmp_path / "ingest.yaml"
    path.write_text(yaml.safe_dump(config))
    source = write_jsonl(tmp_path / "docs.jsonl", docs)
    return [
        f"--config={path}",
        f"--overrides=source.path={source};sink.path={tmp_path / 'ds'};dead_letter.path={tmp_path / 'dlq'}",
        f"--summary={tmp_path / 'summary.json'}",
    ]


def _sample(n: int) -> list:
    return [json.loads(line) for line in (SAMPLE / "docs.jsonl").read_text().splitlines()[:n]]


def test_error_budget_spent_is_exit_3(tmp_path):
    """Run to the end (not Dataflow): the CLI's exit code, 3 when more records failed than run.max_failed."""
    from neural_ingest import exit_codes

    args = _config(tmp_path, [*_sample(6), "{not json", "{nor this"], max_failed=1)
    assert _main().main([*args, "--runner=DirectRunner"]) == exit_codes.ERROR_BUDGET
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["failed"] == 2 and summary["error_budget"] and summary["exit_code"] == exit_codes.ERROR_BUDGET


class _NoWait:
    def __init__(self, result):
        self.result = result

    def wait_until_finish(self, duration=None):
        raise AssertionError("a Flex Template launcher must not wait for the job")

    def job_id(self):
        return "2026-01-01_00_00_00-123"


@pytest.fixture
def no_wait(monkeypatch):
    real = beam.Pipeline.run
    monkeypatch.setattr(beam.Pipeline, "run", lambda self, *a, **kw: _NoWait(real(self, *a, **kw)))


def test_launch_returns_without_waiting_and_the_job_finishes_the_run(tmp_path, no_wait):
    """Launch mode (the path DataflowRunner takes), on DirectRunner, whose run() runs the job to the end:
    the job, not the launcher, publishes the output and writes the summary."""
    from neural_ingest.config import load_config

    main = _main()
    args, _ = main.parse(_config(tmp_path, _sample(5)))
    cfg = load_config(args.config, [o for o in args.overrides.split(";") if o])
    run_id = main.launch(cfg, ["--runner=DirectRunner"], args.summary)
    assert pq.read_table(tmp_path / "ds").num_rows == 5  # the Parquet sink's finalize ran in the job
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == {**summary, "run_id": run_id, "status": "succeeded", "read": 5, "failed": 0, "exit_code": 0}


def test_launched_job_fails_when_the_error_budget_is_spent(tmp_path, no_wait):
    from neural_ingest.config import load_config

    main = _main()
    args, _ = main.parse(_config(tmp_path, [*_sample(3), "{broken"], max_failed=0))
    cfg = load_config(args.config, [o for o in args.overrides.split(";") if o])
    with pytest.raises(Exception, match=r"error budget spent: 1 records failed, more than run.max_failed=0"):
        main.launch(cfg, ["--runner=DirectRunner"], args.summary)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["read"] == 4 and summary["failed"] == 1 and summary["exit_code"] == 3


def test_entry_point_runs_the_pipeline(tmp_path):
    docs = [json.loads(line) for line in (SAMPLE / "docs.jsonl").read_text().splitlines()[:12]]
    source = write_jsonl(tmp_path / "docs.jsonl", docs)
    config = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    config["encoder"]["device"] = "cpu"
    (tmp_path / "ingest.yaml").write_text(yaml.safe_dump(config))
    rc = _main().main(
        [
            f"--config={tmp_path / 'ingest.yaml'}",
            f"--overrides=source.path={source}; sink.path={tmp_path / 'ds'} ;dead_letter.path={tmp_path / 'dlq'}",
            f"--summary={tmp_path / 'summary.json'}",
            "--runner=DirectRunner",
        ]
    )
    assert rc == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["read"] == summary["indexed"] == 12 and summary["reconciles"]
    assert pq.read_table(tmp_path / "ds").num_rows == 12
