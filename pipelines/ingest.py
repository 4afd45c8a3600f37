"""The ingest pipeline: read -> prepare -> encode (one or more encoders) -> sink, dead letters aside.

``run_ingest`` does the driver's part around it: load the models once for pre-flight checks (the
in-process DirectRunner then reuses them), prepare the sink before any encoding, run, publish, and
summarise.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from neural_ingest.chunking import plan_chunking
from neural_ingest.config import ConfigError, PipelineConfig, encoder_field
from neural_ingest.distributed import absolute_paths
from neural_ingest.encoders import Encoder, ModelInfo, make_encoder
from neural_ingest.sinks import REPLACE, Sink, make_sink
from neural_ingest.summary import RunSummary, counter_totals
from neural_ingest.transforms.chunk import ChunkDocuments
from neural_ingest.transforms.counters import DEAD_LETTER, SKIPPED, Progress
from neural_ingest.transforms.dead_letters import WriteDeadLetters
from neural_ingest.transforms.encode import EncodeDocuments
from neural_ingest.transforms.prepare import PrepareDocuments
from neural_ingest.transforms.read import ReadRecords

log = logging.getLogger(__name__)


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


@dataclass
class Prepared:
    """What the driver resolved before building the pipeline."""

    encoders: list[tuple[str, Encoder]]
    fields: dict[str, ModelInfo]
    sink: Sink
    keep_alive: list[Any]  # loaded models held so in-process workers reuse them
    chunking: Any = None  # neural_ingest.chunking.ChunkPlan: chunk, or count truncation (None: neither)


def prepare(cfg: PipelineConfig, write_mode: str = REPLACE) -> Prepared:
    """Load each model once (to learn its dimension and similarity) and build the sink (``write_mode``:
    REPLACE for a run, UPSERT for a replay, which adds to what the sink holds)."""
    if cfg.source.type == "opensearch":  # fail before loading any model, in one line
        from neural_ingest.transforms.read_opensearch import source_problems

        if problems := source_problems(cfg.source):
            raise ConfigError("; ".join(problems))
    encoders = [(encoder_field(c), make_encoder(c)) for c in cfg.encoders]
    loaded = [enc.acquire() for _, enc in encoders]
    fields = {f: l.info for (f, _), l in zip(encoders, loaded)}
    plan = plan_chunking(cfg, encoders, loaded)
    sink = make_sink(cfg.sink, write_mode)
    sink.chunking = plan if plan is not None and plan.chunking else None  # nested / separate chunk storage
    return Prepared(encoders, fields, sink, loaded, plan)


def build_ingest(
    p: beam.Pipeline, cfg: PipelineConfig, prep: Prepared, run_id: str, before_encode: beam.PTransform | None = None
) -> None:
    """``before_encode`` (e.g. reindex's vector reuse) takes the prepared Documents and returns
    {"documents": to encode, "ready": already carrying their vectors, optionally "dead_letter"}."""
    every = cfg.run.progress_every_seconds
    read = p | "Read" >> ReadRecords(cfg.source)
    prepared = read["records"] | "Prepare" >> PrepareDocuments(cfg.source)
    docs = prepared["documents"]
    dead = [read[DEAD_LETTER], prepared[DEAD_LETTER]]
    _ = prepared[SKIPPED] | "WriteSkipped" >> WriteDeadLetters(cfg.dead_letter.path, run_id, name="skipped")
    if prep.chunking is not None:  # chunks (chunking.mode: chunk) and truncation counts
        chunked = docs | "Chunk" >> ChunkDocuments(prep.chunking, prep.encoders)
        docs = chunked["documents"]
        dead.append(chunked[DEAD_LETTER])
    ready = []
    if before_encode is not None:
        pre = docs | "BeforeEncode" >> before_encode
        docs = pre["documents"]
        ready = [pre["ready"]] if "ready" in pre else []
        dead += [pre[DEAD_LETTER]] if DEAD_LETTER in pre else []
    for field, encoder in prep.encoders:
        enc = docs | f"Encode[{field}]" >> EncodeDocuments(encoder, field, every)
        docs = enc["documents"]
        dead.append(enc[DEAD_LETTER])
    if ready:
        docs = (docs, *ready) | "WithReady" >> beam.Flatten()
    written = docs | "Write" >> prep.sink.write(run_id, prep.fields, every)
    if DEAD_LETTER in written:
        dead.append(written[DEAD_LETTER])
    _ = tuple(dead) | "AllDeadLetters" >> beam.Flatten() | "WriteDeadLetters" >> WriteDeadLetters(cfg.dead_letter.path, run_id)


def run_ingest(
    cfg: PipelineConfig,
    beam_args: list[str] | None = None,
    summary_path: str | None = None,
    before_encode: beam.PTransform | None = None,
    write_mode: str = REPLACE,
) -> RunSummary:
    run_id = new_run_id()
    cfg = absolute_paths(cfg)  # workers of a distributed runner run in another directory
    prep = prepare(cfg, write_mode)
    prep.sink.prepare(prep.fields, run_id)  # pre-flight: fails before any encoding

    options = PipelineOptions([*cfg.beam_args, *(beam_args or [])])
    std = options.view_as(StandardOptions)
    std.runner = std.runner or "DirectRunner"
    Progress.reset()
    t0 = time.monotonic()
    p = beam.Pipeline(options=options)
    build_ingest(p, cfg, prep, run_id, before_encode)
    try:
        result = p.run()
        result.wait_until_finish()
    except BaseException:
        prep.sink.finalize(run_id, success=False)
        raise
    seconds = time.monotonic() - t0
    prep.sink.finalize(run_id, success=True)
    summary = RunSummary.from_counters(
        counter_totals(result),
        fields=list(prep.fields),
        seconds=seconds,
        run_id=run_id,
        name=cfg.run.name,
        status="succeeded",
        sink=prep.sink.describe(),
        index=prep.sink.index_name,
        dead_letter_path=f"{cfg.dead_letter.path.rstrip('/')}/{run_id}",
        runner=str(std.runner),
        models={f: i.as_dict() for f, i in prep.fields.items()},
    )
    summary.apply_error_budget(cfg.run.max_failed, cfg.run.max_failed_ratio)
    if summary_path:
        summary.write(summary_path)
    return summary
