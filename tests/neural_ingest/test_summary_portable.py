"""Run summaries from a portable runner's metrics (Flink, Spark): the job service returns attempted
and, when the runner has them, committed values; counters are summed over steps either way."""
from __future__ import annotations

from apache_beam.metrics import monitoring_infos
from apache_beam.portability.api import beam_job_api_pb2
from apache_beam.runners.portability.portable_runner import PortableMetrics

from neural_ingest.summary import RunSummary, counter_totals
from neural_ingest.transforms.counters import NAMESPACE


class _Result:
    def __init__(self, attempted, committed=()):
        response = beam_job_api_pb2.GetJobMetricsResponse(
            metrics=beam_job_api_pb2.MetricResults(attempted=list(attempted), committed=list(committed)))
        self._metrics = PortableMetrics(response)

    def metrics(self):
        return self._metrics


def _counter(name, value, step):
    return monitoring_infos.int64_user_counter(NAMESPACE, name, value, ptransform=step)


def test_attempted_only_still_reconciles():
    result = _Result([
        _counter("read", 200, "ref_Read_1"), _counter("read", 100, "ref_Read_2"),
        _counter("indexed", 297, "ref_Write"), _counter("failed.encode.ValueError", 3, "ref_Encode"),
        monitoring_infos.int64_user_counter("other", "read", 999, ptransform="x"),  # not ours
    ])
    totals = counter_totals(result)
    assert totals == {"read": 300, "indexed": 297, "failed.encode.ValueError": 3}
    summary = RunSummary.from_counters(
        totals, fields=["embedding"], seconds=1.0, run_id="r", name="n", status="succeeded", sink="s",
        index="i", dead_letter_path="d", runner="FlinkRunner")
    assert summary.reconciles and summary.failed == 3


def test_committed_wins_over_attempted():
    result = _Result(attempted=[_counter("read", 12, "ref_Read")], committed=[_counter("read", 10, "ref_Read")])
    assert counter_totals(result) == {"read": 10}
