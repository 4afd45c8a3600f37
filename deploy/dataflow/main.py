"""Dataflow Flex Template entry point: `neural-ingest run` with the config read from any Beam
filesystem (gs://, s3://, local). The launcher calls it with the template parameters as
--config=... [--overrides="key=value;key=value"] [--summary=...] plus Dataflow's own options, which go to Beam.

On Dataflow (``--runner DataflowRunner``, or Beam's ``--template_location``) it builds the pipeline,
submits it and returns at once: Google's Flex Template guide says a launcher must not wait for the
job. What `neural-ingest run` does after the pipeline then happens in the job itself, in a last step
that runs once every record is written: it makes the writes searchable (the sink's finalize), writes
the summary (--summary) and, when the error budget (run.max_failed / run.max_failed_ratio) is spent,
fails the job, so the job's state says what the CLI's exit code 3 says.

Anywhere else (DirectRunner, Flink, ...) it runs like `neural-ingest run` and returns its exit code
(0 ok, 1 internal error, 2 a problem to fix, 3 error budget spent). Locally, for example:
    python deploy/dataflow/main.py --config configs/quickstart.yaml --runner DirectRunner
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from typing import Any

import apache_beam as beam

log = logging.getLogger("neural_ingest.flex_template")
LAUNCH_RUNNERS = {"DataflowRunner", "TestDataflowRunner"}


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True, help="The pipeline config (YAML), e.g. gs://bucket/ingest.yaml.")
    p.add_argument("--overrides", default="", help="key.path=value pairs separated by ';' (like --set).")
    p.add_argument("--summary", default="", help="Also write the run summary (JSON) here; any Beam filesystem.")
    return p.parse_known_args(argv)


def launches(beam_args: list[str], cfg: Any) -> bool:
    """Whether this process only submits the job (Dataflow) instead of running it to the end."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions

    options = PipelineOptions([*cfg.beam_args, *beam_args])
    runner = options.view_as(StandardOptions).runner or ""
    return runner.rsplit(".", 1)[-1] in LAUNCH_RUNNERS or bool(options.view_as(GoogleCloudOptions).template_location)


def write_text(path: str, text: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path) as out:
        out.write(text.encode() + b"\n")


class FinishRun(beam.DoFn):
    """The driver's part of a run, done by the job: once, after the writes (its side inputs are the
    counts, complete only when every record went through). Makes the sink's writes searchable, writes
    the summary, and raises when the error budget is spent, which fails the job."""

    def __init__(self, cfg: Any, run_id: str, summary_path: str):
        self.cfg, self.run_id, self.summary_path = cfg, run_id, summary_path

    def process(self, _: Any, read: int, failed: int, written: int) -> Any:  # written: only waited for
        from neural_ingest import exit_codes
        from neural_ingest.sinks import make_sink
        from neural_ingest.summary import RunSummary

        make_sink(self.cfg.sink).finalize(self.run_id, success=True)  # as `run`: a spent budget still publishes
        s = RunSummary(run_id=self.run_id, name=self.cfg.run.name, status="succeeded", read=read, encoded=0, indexed=0,
                       failed=failed, skipped=0, seconds=0.0, docs_per_second=0.0, sink=self.cfg.sink.type,
                       index=getattr(self.cfg.sink, "index", None), runner="DataflowRunner",
                       dead_letter_path=f"{self.cfg.dead_letter.path.rstrip('/')}/{self.run_id}")
        s.apply_error_budget(self.cfg.run.max_failed, self.cfg.run.max_failed_ratio)
        s.exit_code = exit_codes.ERROR_BUDGET if s.error_budget else exit_codes.OK
        result = {
            "run_id": s.run_id,
            "status": s.status,
            "read": read,
            "failed": failed,
            "error_budget": s.error_budget,
            "exit_code": s.exit_code,
            "dead_letter_path": s.dead_letter_path,
        }
        if self.summary_path:
            write_text(self.summary_path, json.dumps(result, indent=2))
        if s.error_budget:
            raise RuntimeError(f"error budget spent: {s.error_budget} (dead letters: {s.dead_letter_path})")
        yield result


def _outputs(p: beam.Pipeline, label: str) -> list[beam.PCollection]:
    """The output PCollections of the top-level transform ``label`` of the ingest pipeline."""
    from apache_beam.pipeline import PipelineVisitor

    found: list[beam.PCollection] = []

    class Find(PipelineVisitor):
        def enter_composite_transform(self, node: Any) -> None:
            if node.full_label == label:
                found.extend(v for v in node.outputs.values() if isinstance(v, beam.PCollection))

        def visit_transform(self, node: Any) -> None:
            self.enter_composite_transform(node)

    p.visit(Find())
    return found


def _records(element: Any) -> int:
    """Records an element stands for: a file source's read and its documents flow as lists (chunks of ~1000)."""
    return len(element) if type(element) is list else 1


def _count(p: beam.Pipeline, name: str, pcolls: list[beam.PCollection]) -> Any:
    merged = tuple(pcolls) | f"{name}All" >> beam.Flatten(pipeline=p) if pcolls else p | f"{name}None" >> beam.Create([])
    counted = merged | f"{name}Records" >> beam.Map(_records) | f"{name}Count" >> beam.CombineGlobally(sum)
    return beam.pvalue.AsSingleton(counted)


def launch(cfg: Any, beam_args: list[str], summary_path: str = "") -> str:
    """Build the ingest pipeline with FinishRun as its last step, submit it, return its job id (no wait)."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from neural_ingest.distributed import absolute_paths
    from neural_ingest.pipelines.ingest import build_ingest, check_source, new_run_id, prepare

    check_source(cfg.source)
    cfg = absolute_paths(cfg)
    run_id = new_run_id()
    prep = prepare(cfg)
    prep.sink.prepare(prep.fields, run_id)  # pre-flight, before the job starts
    options = PipelineOptions([*cfg.beam_args, *beam_args])
    options.view_as(StandardOptions).runner = options.view_as(StandardOptions).runner or "DataflowRunner"
    p = beam.Pipeline(options=options)
    build_ingest(p, cfg, prep, run_id)
    read, dead, written = _outputs(p, "Read"), _outputs(p, "AllDeadLetters"), _outputs(p, "Write")
    if not read or not dead:
        raise RuntimeError("the ingest pipeline has no Read / AllDeadLetters step: deploy/dataflow/main.py must follow it")
    _ = (
        p
        | "FinishStart" >> beam.Create([None])
        | "FinishRun"
        >> beam.ParDo(
            FinishRun(cfg, run_id, summary_path),
            read=_count(p, "Read", read),
            failed=_count(p, "Failed", dead),
            written=_count(p, "Written", written),
        )
    )
    result = p.run()  # submitted: the job finishes (or fails its error budget) on its own
    try:
        job_id = result.job_id()  # DataflowPipelineResult; none for a template file or another runner
    except Exception:  # noqa: BLE001 - only for the log line
        job_id = None
    log.info(
        "launched run %s%s; the job makes the writes searchable and fails when the error budget is spent",
        run_id,
        f" as Dataflow job {job_id}" if job_id else "",
    )
    return run_id


def run(cfg: Any, beam_args: list[str], summary_path: str = "") -> int:
    """Run the pipeline to the end, as `neural-ingest run` does; its exit code."""
    from neural_ingest.pipelines.ingest import run_ingest

    summary = run_ingest(cfg, beam_args)
    text = json.dumps(summary.to_dict(), indent=2)
    log.info("run summary:\n%s", text)
    if summary_path:
        write_text(summary_path, text)
    return int(summary.exit_code or 0)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args, beam_args = parse(argv)
    from apache_beam.io.filesystems import FileSystems

    from neural_ingest import exit_codes
    from neural_ingest.config import load_config

    try:
        with FileSystems.open(args.config) as src, tempfile.NamedTemporaryFile("wb", suffix=".yaml", delete=False) as dst:
            dst.write(src.read())
        try:
            cfg = load_config(dst.name, [o.strip() for o in args.overrides.split(";") if o.strip()])
        finally:
            os.unlink(dst.name)
        if launches(beam_args, cfg):
            launch(cfg, beam_args, args.summary)
            return exit_codes.OK
        return run(cfg, beam_args, args.summary)
    except Exception as e:  # noqa: BLE001 - one line and the CLI's exit code, as `neural-ingest run`
        log.error("%s", exit_codes.one_line(e))
        return exit_codes.exit_code_for(e)


if __name__ == "__main__":
    sys.exit(main())
