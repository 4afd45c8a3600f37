"""The local runner, picked rather than guessed.

Beam's ``DirectRunner`` first tries the Prism runner, a binary it downloads from GitHub on every run:
offline (or behind a firewall) that costs a failed download before it falls back; online the pipeline
runs on Prism, another engine whose memory and speed this project neither tests nor measures. A
``neural-ingest`` run with ``--runner DirectRunner`` (the default) therefore runs on the FnApiRunner the
DirectRunner falls back to (in one process, or several with ``--direct_running_mode multi_processing``);
any other ``--runner``, ``PrismRunner`` included, is Beam's own.

On the portable Java runners (Flink, Spark) a batch job is fused by the Python SDK (``pre_optimize=all``)
unless the user chose a ``pre_optimize`` (``portable_defaults``): see that function for why.
"""
from __future__ import annotations

import bz2
import contextlib
from collections.abc import Iterator
from typing import Any

from apache_beam.options.pipeline_options import DebugOptions, DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.direct.direct_runner import SwitchingDirectRunner

LOCAL_NAMES = {"DirectRunner", "SwitchingDirectRunner"}
# Runners whose Java job server runs the stages through SdkHarnessClient (Prism is Go and fuses itself).
PORTABLE_JAVA_NAMES = {"FlinkRunner", "SparkRunner", "PortableRunner"}
SDK_FUSION = "pre_optimize=all"


class LocalRunner(SwitchingDirectRunner):
    """The DirectRunner without its Prism attempt: the FnApiRunner, given the run's options."""

    def run_pipeline(self, pipeline: Any, options: Any) -> Any:
        from apache_beam.portability.api import beam_provision_api_pb2
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from apache_beam.runners.portability.portable_runner import JobServiceHandle

        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
        info = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
        in_process = options.view_as(DirectOptions).direct_running_mode != "multi_processing"
        with uncompressed_pickles() if in_process else contextlib.nullcontext(), prompt_state_samplers():
            return fn_runner.FnApiRunner(provision_info=info).run_pipeline(pipeline, options)


_RAW = b"neural-ingest-raw:"  # starts no bz2 stream (those start "BZh")


class _Uncompressed:
    """Beam's cloudpickle pickler's ``bz2``, for pickles that never leave this process: stored as they are."""

    def __init__(self, bz2: Any):
        self.bz2 = bz2

    def compress(self, data: bytes, compresslevel: int = 9) -> bytes:
        return _RAW + data

    def decompress(self, data: bytes) -> bytes:
        return data[len(_RAW):] if data[: len(_RAW)] == _RAW else bytes(self.bz2.decompress(data))


@contextlib.contextmanager
def uncompressed_pickles() -> Iterator[None]:
    """Beam compresses every pickled DoFn of the pipeline proto with bz2 at level 9 (for the size limits of a job
    sent elsewhere) and the in-process bundle processors decompress them again: about a quarter of a small local
    run's fixed cost (profiled), for bytes that never leave the process. While a local run runs in this process
    they are kept as they are; a bz2 pickle made before still loads. Not for ``multi_processing`` (workers elsewhere)."""
    from apache_beam.internal import cloudpickle_pickler

    real = getattr(cloudpickle_pickler, "bz2", None)
    if real is not bz2:  # Beam no longer compresses this way: nothing to do
        yield
        return
    cloudpickle_pickler.bz2 = _Uncompressed(real)  # type: ignore[assignment]
    try:
        yield
    finally:
        cloudpickle_pickler.bz2 = real


def runner_for(name: str | None) -> LocalRunner | None:
    """The runner object for ``--runner name``: ours for the DirectRunner, None (Beam's choice) otherwise."""
    return LocalRunner() if (name or "DirectRunner").rsplit(".", 1)[-1] in LOCAL_NAMES else None


def portable_defaults(options: PipelineOptions) -> PipelineOptions:
    """A batch job on a portable Java runner gets ``--experiments=pre_optimize=all`` (unless a ``pre_optimize``
    was given): the Python SDK fuses the stages, a ParDo with a side input included, so the documents go from
    the read to the sink inside one SDK stage and only small results cross the data plane.

    Why: the job server's own fuser starts a new stage at every ParDo with a side input (the dedupe's
    ``KeepLast``), so every document left the read stage through the data plane; Flink's batch mode runs a
    whole partition as one bundle, and Beam's ``SdkHarnessClient`` (2.62) drains a bundle's outputs only after
    the SDK has answered: past ~100 queued messages (about 1 GB: 1,000,000 documents on one slot) the SDK
    blocks on its send and the job hangs, idle. Streaming jobs are left alone (Beam does no pre-fusion there)."""
    name = str(options.view_as(StandardOptions).runner or "").rsplit(".", 1)[-1]
    debug = options.view_as(DebugOptions)
    if (
        name in PORTABLE_JAVA_NAMES
        and not options.view_as(StandardOptions).streaming
        and debug.lookup_experiment("pre_optimize") is None
    ):
        debug.add_experiment(SDK_FUSION)
    return options


SAMPLING_PERIOD_MS = 20  # the state sampler's longest sleep during a local run (Beam: 200)


@contextlib.contextmanager
def prompt_state_samplers() -> Iterator[None]:
    """Each bundle's state sampler (Beam's per-step timing) sleeps in a thread for up to 200 ms at a time, and a bundle
    ends only when that sleep does: a long bundle waits ~0.1 s idle at its end (a 20,000-document run: ~10% of its
    wall time, measured). While a local run runs, the longest sleep is SAMPLING_PERIOD_MS."""
    from apache_beam.runners.worker import statesampler

    init = statesampler.StateSampler.__init__
    defaults = init.__defaults__
    if defaults != (statesampler.DEFAULT_SAMPLING_PERIOD_MS,):  # Beam's signature changed: leave it
        yield
        return
    init.__defaults__ = (SAMPLING_PERIOD_MS,)
    try:
        yield
    finally:
        init.__defaults__ = defaults
