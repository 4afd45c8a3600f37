"""Dataflow Flex Template entry point: `neural-ingest run` with the config read from any Beam
filesystem (gs://, s3://, local). The launcher calls it with the template parameters as
--config=... [--overrides="key=value;key=value"] plus Dataflow's own options, which go to Beam.

Also runs anywhere Beam does, e.g. locally:
    python deploy/dataflow/main.py --config configs/quickstart.yaml --runner DirectRunner
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True, help="The pipeline config (YAML), e.g. gs://bucket/ingest.yaml.")
    p.add_argument("--overrides", default="", help="key.path=value pairs separated by ';' (like --set).")
    p.add_argument("--summary", default="", help="Also write the run summary (JSON) here; any Beam filesystem.")
    return p.parse_known_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args, beam_args = parse(argv)
    from apache_beam.io.filesystems import FileSystems

    from neural_ingest.config import load_config
    from neural_ingest.pipelines.ingest import run_ingest

    with FileSystems.open(args.config) as src, tempfile.NamedTemporaryFile("wb", suffix=".yaml", delete=False) as dst:
        dst.write(src.read())
    try:
        cfg = load_config(dst.name, [o.strip() for o in args.overrides.split(";") if o.strip()])
    finally:
        os.unlink(dst.name)
    summary = run_ingest(cfg, beam_args)
    text = json.dumps(summary.to_dict(), indent=2)
    logging.getLogger("neural_ingest").info("run summary:\n%s", text)
    if args.summary:
        with FileSystems.create(args.summary) as out:
            out.write(text.encode() + b"\n")
    return 0 if summary.reconciles else 1


if __name__ == "__main__":
    sys.exit(main())
