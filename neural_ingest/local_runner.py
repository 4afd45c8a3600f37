"""The local runner, picked rather than guessed.

Beam's ``DirectRunner`` first tries the Prism runner, a binary it downloads from GitHub on every run:
offline (or behind a firewall) that costs a failed download before it falls back; online the pipeline
runs on Prism, another engine whose memory and speed this project neither tests nor measures. A
``neural-ingest`` run with ``--runner DirectRunner`` (the default) therefore runs on the FnApiRunner the
DirectRunner falls back to (in one process, or several with ``--direct_running_mode multi_processing``);
any other ``--runner``, ``PrismRunner`` included, is Beam's own.
"""
from __future__ import annotations

from typing import Any

from apache_beam.runners.direct.direct_runner import SwitchingDirectRunner

LOCAL_NAMES = {"DirectRunner", "SwitchingDirectRunner"}


class LocalRunner(SwitchingDirectRunner):
    """The DirectRunner without its Prism attempt: the FnApiRunner, given the run's options."""

    def run_pipeline(self, pipeline: Any, options: Any) -> Any:
        from apache_beam.portability.api import beam_provision_api_pb2
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from apache_beam.runners.portability.portable_runner import JobServiceHandle

        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
        info = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
        return fn_runner.FnApiRunner(provision_info=info).run_pipeline(pipeline, options)


def runner_for(name: str | None) -> LocalRunner | None:
    """The runner object for ``--runner name``: ours for the DirectRunner, None (Beam's choice) otherwise."""
    return LocalRunner() if (name or "DirectRunner").rsplit(".", 1)[-1] in LOCAL_NAMES else None
