"""Boot a Beam Python SDK worker on a host, for portable runners' PROCESS environment.

Beam's SDK container starts workers with a "boot" program: the runner (a Flink taskmanager, a Spark
executor) runs it with ``--id --provision_endpoint --control_endpoint --logging_endpoint
--artifact_endpoint``; boot asks the provision service for the pipeline options and starts the SDK
harness. Outside a container there is no boot binary, so this module does the same with the Python it
runs on, which must already have neural-ingest and its models installed (e.g. the project's venv on
every node). It does not pip-install staged packages: ship code to such hosts with the venv, or use
the container (Dataflow, Kubernetes) or worker-pool setups. scripts/beam-worker-boot runs it:

    --environment_type PROCESS --environment_config '{"command": "/path/to/scripts/beam-worker-boot"}'
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from typing import Any

log = logging.getLogger("neural_ingest.worker_boot")

# Staged by every Python submission; the SDK container only uses it for diagnostics.
_ALWAYS_STAGED = {"submission_environment_dependencies.txt"}


def _provision_info(endpoint: str, worker_id: str, timeout: float = 60.0) -> Any:
    import grpc
    from apache_beam.portability.api import beam_provision_api_pb2, beam_provision_api_pb2_grpc

    with grpc.insecure_channel(endpoint) as channel:
        grpc.channel_ready_future(channel).result(timeout=timeout)
        stub = beam_provision_api_pb2_grpc.ProvisionServiceStub(channel)
        return stub.GetProvisionInfo(
            beam_provision_api_pb2.GetProvisionInfoRequest(), metadata=[("worker_id", worker_id)], timeout=timeout
        ).info


def _descriptor(url: str) -> str:
    from apache_beam.portability.api import endpoints_pb2
    from google.protobuf import text_format

    return str(text_format.MessageToString(endpoints_pb2.ApiServiceDescriptor(url=url)))


def _staged_names(info: Any) -> list[str]:
    from apache_beam.portability.api import beam_runner_api_pb2

    names = []
    for dep in info.dependencies:
        if dep.role_urn == "beam:artifact:role:staging_to:v1":
            names.append(beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dep.role_payload).staged_name)
    return names


def worker_environment(args: argparse.Namespace, info: Any, base: dict[str, str]) -> dict[str, str]:
    """The environment sdk_worker_main expects, as the SDK container's boot sets it."""
    from google.protobuf import json_format

    semi = args.semi_persist_dir or tempfile.mkdtemp(prefix=f"beam-worker-{args.id}-")
    os.makedirs(semi, exist_ok=True)
    options_file = os.path.join(semi, "pipeline_options.json")
    with open(options_file, "w", encoding="utf-8") as f:
        f.write(json_format.MessageToJson(info.pipeline_options) if info is not None else "{}")
    control = (info.control_endpoint.url if info is not None and info.control_endpoint.url else "") or args.control_endpoint
    logging_url = (info.logging_endpoint.url if info is not None and info.logging_endpoint.url else "") or args.logging_endpoint
    env = dict(base)
    env.update(
        WORKER_ID=args.id,
        PIPELINE_OPTIONS_FILE=options_file,
        SEMI_PERSISTENT_DIRECTORY=semi,
        CONTROL_API_SERVICE_DESCRIPTOR=_descriptor(control),
    )
    if logging_url:
        env["LOGGING_API_SERVICE_DESCRIPTOR"] = _descriptor(logging_url)
    if info is not None and info.status_endpoint.url:
        env["STATUS_API_SERVICE_DESCRIPTOR"] = _descriptor(info.status_endpoint.url)
    if info is not None and info.runner_capabilities:
        env["RUNNER_CAPABILITIES"] = " ".join(info.runner_capabilities)
    return env


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Beam SDK worker boot for a host Python (PROCESS environment).")
    p.add_argument("--id", required=True, help="Worker id given by the runner.")
    p.add_argument("--provision_endpoint", required=True)
    p.add_argument("--control_endpoint", default="")
    p.add_argument("--logging_endpoint", default="")
    p.add_argument("--artifact_endpoint", default="")
    p.add_argument("--semi_persist_dir", default="")
    args, _ = p.parse_known_args(argv)
    return args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s worker_boot[%(process)d] %(message)s")
    args = parse_args(argv)
    info = _provision_info(args.provision_endpoint, args.id)
    extra = [n for n in _staged_names(info) if n not in _ALWAYS_STAGED]
    if extra:
        log.warning("staged artifacts %s are not installed by this boot: the worker uses %s as it is", extra, sys.executable)
    env = worker_environment(args, info, dict(os.environ))
    log.info(
        "starting SDK worker %s (control %s) with %s", args.id, env["CONTROL_API_SERVICE_DESCRIPTOR"].strip(), sys.executable
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "apache_beam.runners.worker.sdk_worker_main"], env)


if __name__ == "__main__":  # pragma: no cover
    main()
