"""The local runner never tries Prism (a download from GitHub on every run, or a different engine)."""
from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import DebugOptions, PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.portability import prism_runner
from apache_beam.runners.portability.portable_runner import PortableRunner
from apache_beam.testing.util import assert_that, equal_to

from neural_ingest.local_runner import LocalRunner, portable_defaults, runner_for
from neural_ingest.pipelines.ingest import build_ingest, prepare


@pytest.fixture
def prism_calls(monkeypatch):
    calls: list[str] = []

    def refuse(self, pipeline, options):
        calls.append("prism")
        raise RuntimeError("Prism must not be tried")

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", refuse)
    return calls


@pytest.mark.parametrize("name", [None, "DirectRunner", "apache_beam.runners.direct.direct_runner.DirectRunner"])
def test_the_direct_runner_runs_on_the_fn_api_runner_without_prism(name, prism_calls):
    runner = runner_for(name)
    assert isinstance(runner, LocalRunner)
    with beam.Pipeline(runner=runner, options=PipelineOptions([])) as p:
        assert_that(p | beam.Create([1, 2, 3]) | beam.Map(lambda x: x * 2), equal_to([2, 4, 6]))
    assert prism_calls == []


def test_beams_direct_runner_would_try_prism(prism_calls):
    """What the project avoids: Beam's own DirectRunner asks Prism first (then falls back)."""
    with beam.Pipeline(runner="DirectRunner", options=PipelineOptions([])) as p:
        assert_that(p | beam.Create([1]), equal_to([1]))
    assert prism_calls == ["prism"]


@pytest.mark.parametrize("name", ["PrismRunner", "FlinkRunner", "PortableRunner", "DataflowRunner"])
def test_other_runners_are_beams_choice(name):
    assert runner_for(name) is None


FLINK = ["--runner", "FlinkRunner", "--flink_master", "127.0.0.1:8081", "--environment_type", "EXTERNAL",
         "--environment_config", "127.0.0.1:50000"]


def _experiments(args: list[str]) -> list[str]:
    return portable_defaults(PipelineOptions(args)).view_as(DebugOptions).experiments or []


@pytest.mark.parametrize("runner", ["FlinkRunner", "SparkRunner", "PortableRunner"])
def test_a_batch_job_on_a_portable_java_runner_is_fused_by_the_sdk(runner):
    assert "pre_optimize=all" in _experiments(["--runner", runner])


@pytest.mark.parametrize("args", [
    [],  # DirectRunner: its own fusion
    ["--runner", "DirectRunner"],
    ["--runner", "PrismRunner"],
    [*FLINK, "--streaming"],  # Beam does no pre-fusion of a streaming job
    [*FLINK, "--experiments=pre_optimize=default"],  # the user's choice stays
])
def test_other_jobs_keep_their_fusion(args):
    assert "pre_optimize=all" not in _experiments(args)


def test_on_flink_documents_go_from_read_to_sink_inside_one_sdk_stage(make_config, tmp_path):
    """The 1,000,000-document hang: the job server's fuser cut the stage at KeepLast (a side input), so every
    document crossed the data plane in one bundle per partition. Optimised as the FlinkRunner does it, the read,
    the dedupe's KeepLast, the encode and the sink's write are one executable stage."""
    cfg = make_config(overrides={"encoder": {"type": "hash", "dimension": 8}})
    options = portable_defaults(PipelineOptions(FLINK))
    p = beam.Pipeline(options=options)
    build_ingest(p, cfg, prepare(cfg), "run-1")
    proto = PortableRunner._optimize_pipeline(p.to_runner_api(), options)  # what FlinkRunner sends the job server
    stages = []
    for t in proto.root_transform_ids:
        spec = proto.components.transforms[t].spec
        if spec.urn == "beam:runner:executable_stage:v1":
            payload = beam_runner_api_pb2.ExecutableStagePayload.FromString(spec.payload)
            stages.append({payload.components.transforms[x].unique_name for x in payload.transforms})
    doc_path = [s for s in stages if any("KeepLast" in n for n in s)]
    assert len(doc_path) == 1, stages
    assert any(n.startswith("Read/ReadLine") for n in doc_path[0])  # ReadLines, or ReadLineChunks (chunks of lines)
    assert any("Encode[embedding]" in n for n in doc_path[0])  # Encode/Encode[embedding]: the EncodeAll composite
    assert any(n.startswith("Write/") for n in doc_path[0])


def test_pickles_of_a_local_run_stay_uncompressed_and_old_ones_still_load():
    import bz2

    from apache_beam.internal import cloudpickle_pickler, pickler

    from neural_ingest.local_runner import uncompressed_pickles

    before = pickler.dumps({"a": 1})
    with uncompressed_pickles():
        inside = pickler.dumps({"b": 2})
        assert pickler.loads(inside) == {"b": 2} and pickler.loads(before) == {"a": 1}
        assert b"BZh" not in __import__("base64").b64decode(inside)[:3]
    assert cloudpickle_pickler.bz2 is bz2 and pickler.loads(pickler.dumps({"c": 3})) == {"c": 3}


def test_state_samplers_sleep_briefly_only_during_a_local_run():
    from apache_beam.runners.worker import statesampler

    from neural_ingest.local_runner import SAMPLING_PERIOD_MS, prompt_state_samplers

    with prompt_state_samplers():
        assert statesampler.StateSampler("s", None).sampling_period_ms == SAMPLING_PERIOD_MS
    assert statesampler.StateSampler("s", None).sampling_period_ms == statesampler.DEFAULT_SAMPLING_PERIOD_MS
