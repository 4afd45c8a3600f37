"""The ingest pipeline: read -> prepare -> encode (one or more encoders) -> sink, dead letters aside.

``run_ingest`` does the driver's part around it: load the models once for pre-flight checks (the
in-process DirectRunner then reuses them), prepare the sink before any encoding, run, publish, and
summarise.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from neural_ingest.chunking import ChunkPlan, plan_chunking
from neural_ingest.config import ConfigError, PipelineConfig, encoder_field
from neural_ingest.distributed import absolute_paths
from neural_ingest.encoders import Encoder, ModelInfo, make_encoder
from neural_ingest.local_runner import LocalRunner, portable_defaults, runner_for
from neural_ingest.sinks import REPLACE, Sink, make_sink
from neural_ingest.sinks.recall import LOW_RECALL
from neural_ingest.summary import RunSummary, counter_totals
from neural_ingest.transforms import dofn_specs, option_views
from neural_ingest.transforms.batching import Unchunk
from neural_ingest.transforms.chunk import ChunkDocuments
from neural_ingest.transforms.counters import DEAD_LETTER, SKIPPED, Progress
from neural_ingest.transforms.dead_letters import DEAD_LETTERS, SKIPPED_FILES, WriteDeadLetters
from neural_ingest.transforms.encode import EncodeAll
from neural_ingest.transforms.prepare import PrepareDocuments
from neural_ingest.transforms.read import ReadRecords

log = logging.getLogger(__name__)


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


@dataclass
class Prepared:
    """What the driver resolved before building the pipeline."""

    encoders: list[tuple[str, Encoder[Any]]]
    fields: dict[str, ModelInfo]
    sink: Sink
    keep_alive: list[Any]  # loaded models held so in-process workers reuse them
    chunking: ChunkPlan | None = None  # chunk, or count truncation (None: neither)


def prepare(cfg: PipelineConfig, write_mode: str = REPLACE) -> Prepared:
    """Load each model once (to learn its dimension and similarity) and build the sink (``write_mode``:
    REPLACE for a run, UPSERT for a replay, which adds to what the sink holds)."""
    if cfg.source.type == "opensearch":  # fail before loading any model, in one line
        from neural_ingest.transforms.read_opensearch import source_problems

        if problems := source_problems(cfg.source):
            raise ConfigError("; ".join(problems))
    encoders = [(encoder_field(c), make_encoder(c)) for c in cfg.encoders]
    loaded = [enc.acquire() for _, enc in encoders]
    fields = {f: model.info for (f, _), model in zip(encoders, loaded)}
    plan = plan_chunking(cfg, encoders, loaded)
    sink = make_sink(cfg.sink, write_mode, plan)  # a chunk plan: nested / separate chunk storage
    return Prepared(encoders, fields, sink, loaded, plan)


def build_ingest(
    p: beam.Pipeline, cfg: PipelineConfig, prep: Prepared, run_id: str,
    before_encode: beam.PTransform[Any, Any] | None = None,
) -> None:
    """``before_encode`` (e.g. reindex's vector reuse) takes the prepared Documents and returns
    {"documents": to encode, "ready": already carrying their vectors, optionally "dead_letter"}; one with
    ``reads_source`` instead replaces the read and prepare: PBegin -> the same plus "dead_letter" and "skipped"."""
    every = cfg.run.progress_every_seconds
    ready = []
    chunked = False  # docs' elements are lists of Documents (file sources: one Beam element a chunk, read to write)
    if before_encode is not None and getattr(before_encode, "reads_source", False):
        # reindex's incremental night of a file source (transforms/clone_night.py CloneChanges) reads and prepares the
        # source itself: only the documents to write come out (truncation is counted for those it encodes)
        pre = p | "ReadChanges" >> before_encode
        docs, ready, dead, skipped = pre["documents"], [pre["ready"]], [pre[DEAD_LETTER]], pre[SKIPPED]
        before_encode = None
    else:
        files = cfg.source.type != "opensearch"
        line_digests = getattr(before_encode, "line_digests", False)
        read = p | "Read" >> ReadRecords(cfg.source, line_digests, chunked=files)
        # files: ids found by a light second read
        reread = ReadRecords(cfg.source, chunked=True) if files else None
        prepared = read["records"] | "Prepare" >> PrepareDocuments(cfg.source, reread, chunked=files)
        docs, dead, skipped = prepared["documents"], [read[DEAD_LETTER], prepared[DEAD_LETTER]], prepared[SKIPPED]
        chunked = files
    counted = truncation_counted_by_encode(prep.chunking, prep.encoders, before_encode)
    chunk_step = prep.chunking is not None and not counted
    if chunked and (chunk_step or before_encode is not None):  # these take one Document an element
        docs, chunked = docs | "Unchunk" >> Unchunk(), False
    if chunk_step and prep.chunking is not None:  # chunks (chunking.mode: chunk) and truncation counts
        chunked_docs = docs | "Chunk" >> ChunkDocuments(prep.chunking, prep.encoders)
        docs = chunked_docs["documents"]
        dead.append(chunked_docs[DEAD_LETTER])
    if before_encode is not None:
        pre = docs | "BeforeEncode" >> before_encode
        docs = pre["documents"]
        ready = [pre["ready"]] if "ready" in pre else []
        dead += [pre[DEAD_LETTER]] if DEAD_LETTER in pre else []
    lists = prep.sink.chunking is None  # the sinks' own writers take lists of Documents; the chunk writers one each
    # the encode step of neural_ingest.beam.EmbedAndIndex
    enc = docs | "Encode" >> EncodeAll(prep.encoders, every, counted, chunked=chunked, lists=lists)
    docs, chunked = enc["documents"], lists if prep.encoders else chunked
    dead.append(enc[DEAD_LETTER])
    if ready:
        docs = (docs, *ready) | "WithReady" >> beam.Flatten()
    if chunked and not lists:
        docs = docs | "UnchunkForWrite" >> Unchunk()
    written = docs | "Write" >> prep.sink.write(run_id, prep.fields, every)
    if DEAD_LETTER in written:
        dead.append(written[DEAD_LETTER])
    letters = {DEAD_LETTERS: tuple(dead) | "AllDeadLetters" >> beam.Flatten(), SKIPPED_FILES: skipped}
    _ = letters | "WriteDeadLetters" >> WriteDeadLetters(cfg.dead_letter.path, run_id)


def truncation_counted_by_encode(
    chunking: ChunkPlan | None, encoders: list[tuple[str, Encoder[Any]]], before_encode: object
) -> dict[str, int]:
    """{field: max tokens} when the truncation counts can come from the encode step: truncate mode, one
    local model to count for (so ``truncated`` is its ``truncated.<field>``), which sorts its batches by
    token counts anyway, and every document reaches it (no reuse step before encoding). That step then
    counts the documents over the limit from the counts it takes, and no ChunkFn tokenizes each document
    once more. {} otherwise: ChunkDocuments counts, as before."""
    from neural_ingest.transforms.batching import counts_tokens

    if chunking is None or chunking.chunking or before_encode is not None or len(chunking.max_lengths) != 1:
        return {}
    ((field, limit),) = chunking.max_lengths.items()
    encoder = dict(encoders).get(field)
    return {field: limit} if encoder is not None and counts_tokens(encoder) else {}


def check_source(source: Any) -> str | None:
    """The source's files must exist: one line naming the path and the directory it was resolved
    against, instead of Beam's traceback at pipeline construction. None for an index source."""
    import os

    from apache_beam.io.filesystems import FileSystems

    from neural_ingest.config import ConfigError

    path = getattr(source, "path", None)
    if source.type == "opensearch" or not path:
        return None
    local = "://" not in path
    base = os.getcwd()
    try:
        found = [m for m in FileSystems.match([path])[0].metadata_list if not (local and os.path.isdir(m.path))]
    except Exception as e:  # noqa: BLE001 - BeamIOError for a missing directory, or a filesystem without its extras
        if not local:
            raise ConfigError(
                f"source.path {path}: cannot list it ({' '.join(str(e).split())[:300]}): check source.path"
            ) from None
        found = []
    if not found:
        where = f"resolved against {base}" if local and not os.path.isabs(path) else "an absolute path"
        parent = os.path.dirname(os.path.join(base, path)) if local else ""
        missing = (
            f"; directory {parent} does not exist"
            if local and not any(c in parent for c in "*?[") and not os.path.isdir(parent)
            else ""
        )
        raise ConfigError(f"source.path {path} matches no file ({where}{missing}): check source.path")
    return f"{source.type} {path}: {len(found)} file(s), {sum(m.size_in_bytes for m in found):,} bytes"


def expected_records(source: Any) -> int | None:
    """How many records the source holds, when that is cheap to know (Parquet footers), for the ETA."""
    if source.type != "parquet":
        return None
    try:
        import pyarrow.parquet as pq
        from apache_beam.io.filesystems import FileSystems

        files = FileSystems.match([source.path])[0].metadata_list
        total = 0
        for m in files:
            with FileSystems.open(m.path) as f:
                total += pq.ParquetFile(f).metadata.num_rows
        return total
    except Exception:  # noqa: BLE001 - only an ETA: without it the bar shows counts and rates
        return None


def config_sha256(cfg: PipelineConfig) -> str:
    """sha256 of the validated config as canonical JSON; secret fields are masked before hashing."""
    import hashlib
    import json

    canonical = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def run_ingest(
    cfg: PipelineConfig,
    beam_args: list[str] | None = None,
    summary_path: str | None = None,
    before_encode: beam.PTransform[Any, Any] | None = None,
    write_mode: str = REPLACE,
    *,
    config_path: str | None = None,
    recall_check: Any = None,
) -> RunSummary:
    """Run the pipeline and summarise it. A run that fails still writes its summary (status "failed",
    the error and its exit code) to ``summary_path``, and prints it when the pipeline had started."""
    from neural_ingest import __version__, exit_codes

    run_id = new_run_id()
    started_at, t0 = _utc_now(), time.monotonic()
    meta: dict[str, Any] = {"run_id": run_id, "name": cfg.run.name, "started_at": started_at, "version": __version__,
                            "config_path": config_path, "dead_letter_path": f"{cfg.dead_letter.path.rstrip('/')}/{run_id}"}
    started = False
    stack = contextlib.ExitStack()
    try:
        check_source(cfg.source)
        cfg = absolute_paths(cfg)  # workers of a distributed runner run in another directory
        meta["config_sha256"] = config_sha256(cfg)
        meta["dead_letter_path"] = f"{cfg.dead_letter.path.rstrip('/')}/{run_id}"
        prep = prepare(cfg, write_mode)
        prep.sink.prepare(prep.fields, run_id)  # pre-flight: fails before any encoding
        # Beam's per-DoFn signature inspection once a class (~0.3 s of a run's fixed cost), and one PipelineOptions
        # view per options object and class (not an argparse parser per call), for this run's build and run only
        stack.enter_context(dofn_specs.installed())
        stack.enter_context(option_views.installed())
        options = PipelineOptions([*cfg.beam_args, *(beam_args or [])])
        std = options.view_as(StandardOptions)
        std.runner = std.runner or "DirectRunner"
        portable_defaults(options)
        meta["runner"] = str(std.runner)
        p = beam.Pipeline(runner=runner_for(str(std.runner)), options=options)
        build_ingest(p, cfg, prep, run_id, before_encode)
        started = True
        Progress.begin(expected_records(cfg.source))
        try:
            with fewer_gc_passes():
                # Beam's default for a runner it does not know as FnAPI-ready (ours, a SwitchingDirectRunner by
                # another name) first round-trips the pipeline through its protos as a check: ~0.1 s of every run,
                # and the FnApiRunner converts it again anyway.
                result = p.run(test_runner_api=False) if isinstance(p.runner, LocalRunner) else p.run()
                result.wait_until_finish()
        except BaseException:
            Progress.end()
            prep.sink.finalize(run_id, success=False)
            raise
        Progress.end()
        seconds = time.monotonic() - t0
        prep.sink.finalize(run_id, success=True)
        # recall_check (reindex, sinks/recall_probes.py): the live index's recall or probes carried forward
        recall = None
        if write_mode == REPLACE:
            recall = (recall_check(prep.sink, prep.encoders, prep.fields) if recall_check is not None
                      else prep.sink.measure_recall(prep.encoders, prep.fields))
        stack.close()
    except BaseException as e:
        stack.close()
        summary = _failed_summary(meta, e, time.monotonic() - t0)
        if summary_path:
            summary.write(summary_path)
        if started:
            summary.render()
        raise
    summary = RunSummary.from_counters(
        counter_totals(result),
        fields=list(prep.fields),
        text_fields=list(cfg.source.text_fields),
        seconds=seconds,
        status="succeeded",
        sink=prep.sink.describe(),
        index=prep.sink.index_name,
        models={f: i.as_dict() for f, i in prep.fields.items()},
        recall=recall,
        **meta,
    )
    if recall and recall.get("recall_at_k") is not None and recall["recall_at_k"] < LOW_RECALL:
        summary.warnings.append(
            f"recall@{recall['k']} of a plain k={recall['k']} knn query is {recall['recall_at_k']:.3f} ({recall['engine']}): "
            "clients miss true neighbours; raise sink.knn.ef_search (faiss; lucene on OpenSearch 3.x), use engine faiss, "
            "or have queries rescore (docs/benchmark.md)"
        )
    summary.apply_error_budget(cfg.run.max_failed, cfg.run.max_failed_ratio)
    for warning in summary.check_input(cfg.source.index if cfg.source.type == "opensearch" else cfg.source.path):
        log.warning("%s", warning)
    summary.ended_at = _utc_now()
    summary.exit_code = (
        exit_codes.INTERNAL if not summary.reconciles else exit_codes.ERROR_BUDGET if summary.error_budget else exit_codes.OK
    )
    if summary_path:
        summary.write(summary_path)
    return summary


@contextlib.contextmanager
def fewer_gc_passes(gen0: int = 50_000) -> Iterator[None]:
    """Python's cyclic garbage collector less often while the pipeline runs in this process: what is alive
    before (modules, the pipeline, loaded models) is frozen out of its scans, and a collection starts after
    ``gen0`` allocations instead of 700. The documents are freed by reference counting as they leave; the
    collector's passes over the live objects cost ~10% of a hash-encoder run's CPU (profiled)."""
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(gen0, old[0]), *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def _failed_summary(meta: dict[str, Any], error: BaseException, seconds: float) -> RunSummary:
    """What is known of a run that did not finish: no counts (the runner's metrics died with it)."""
    from neural_ingest import exit_codes

    return RunSummary(
        status="failed", read=0, encoded=0, indexed=0, failed=0, skipped=0, seconds=round(seconds, 3), docs_per_second=0.0,
        sink="", index=None, runner=meta.pop("runner", ""), ended_at=_utc_now(), error=exit_codes.one_line(error),
        exit_code=exit_codes.exit_code_for(error), **meta,
    )
