"""The local runner never tries Prism (a download from GitHub on every run, or a different engine)."""
from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability import prism_runner
from apache_beam.testing.util import assert_that, equal_to

from neural_ingest.local_runner import LocalRunner, runner_for


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
