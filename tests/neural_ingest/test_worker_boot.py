"""The PROCESS-environment boot: asks the runner's provision service for the pipeline options and
endpoints, then starts sdk_worker_main with the environment the SDK container's boot would set."""
from __future__ import annotations

import json
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from apache_beam.portability.api import (
    beam_provision_api_pb2,
    beam_provision_api_pb2_grpc,
    beam_runner_api_pb2,
    endpoints_pb2,
)
from google.protobuf import struct_pb2, text_format

from neural_ingest import worker_boot


class _Provision(beam_provision_api_pb2_grpc.ProvisionServiceServicer):
    def __init__(self):
        self.worker_ids = []

    def GetProvisionInfo(self, request, context):
        self.worker_ids.append(dict(context.invocation_metadata()).get("worker_id"))
        opts = struct_pb2.Struct()
        opts.update({"beam:option:job_name:v1": "ingest", "beam:option:experiments:v1": ["x"]})
        staged = beam_runner_api_pb2.ArtifactInformation(
            role_urn="beam:artifact:role:staging_to:v1",
            role_payload=beam_runner_api_pb2.ArtifactStagingToRolePayload(staged_name="workflow.tar.gz").SerializeToString(),
        )
        return beam_provision_api_pb2.GetProvisionInfoResponse(
            info=beam_provision_api_pb2.ProvisionInfo(
                pipeline_options=opts,
                control_endpoint=endpoints_pb2.ApiServiceDescriptor(url="127.0.0.1:4001"),
                logging_endpoint=endpoints_pb2.ApiServiceDescriptor(url="127.0.0.1:4002"),
                runner_capabilities=["beam:protocol:control_response_elements_embedding:v1"],
                dependencies=[staged],
            )
        )


@pytest.fixture
def provision():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = _Provision()
    beam_provision_api_pb2_grpc.add_ProvisionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(0)


def test_boot_starts_sdk_worker_main_with_provisioned_options(provision, tmp_path, monkeypatch, caplog):
    endpoint, servicer = provision
    started = {}

    def fake_execve(path, argv, env):
        started.update(path=path, argv=argv, env=env)

    monkeypatch.setattr(worker_boot.os, "execve", fake_execve)
    worker_boot.main([
        "--id=1-2", f"--provision_endpoint={endpoint}", "--control_endpoint=127.0.0.1:9",
        "--logging_endpoint=127.0.0.1:8", "--artifact_endpoint=127.0.0.1:7", f"--semi_persist_dir={tmp_path}",
    ])
    assert servicer.worker_ids == ["1-2"]
    assert started["argv"][1:] == ["-m", "apache_beam.runners.worker.sdk_worker_main"]
    env = started["env"]
    assert env["WORKER_ID"] == "1-2" and env["SEMI_PERSISTENT_DIRECTORY"] == str(tmp_path)
    # The provision service's endpoints win over the command line, as in Beam's boot.
    control = text_format.Parse(env["CONTROL_API_SERVICE_DESCRIPTOR"], endpoints_pb2.ApiServiceDescriptor())
    assert control.url == "127.0.0.1:4001"
    assert "127.0.0.1:4002" in env["LOGGING_API_SERVICE_DESCRIPTOR"]
    assert env["RUNNER_CAPABILITIES"] == "beam:protocol:control_response_elements_embedding:v1"
    options = json.loads(Path(env["PIPELINE_OPTIONS_FILE"]).read_text())
    assert options["beam:option:job_name:v1"] == "ingest"
    # sdk_worker_main reads these options back the same way
    from apache_beam.runners.worker.sdk_worker_main import _load_pipeline_options

    assert _load_pipeline_options(json.dumps(options))["job_name"] == "ingest"
    assert any("workflow.tar.gz" in r.getMessage() for r in caplog.records), "staged packages it does not install are named"
