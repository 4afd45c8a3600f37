"""Write plain dicts to OpenSearch from your own Beam pipeline; the ones that cannot land go to a dead-letter file.

    python examples/write_dicts.py --opensearch-url http://127.0.0.1:9200 --index example-products

The record without an "id" becomes a dead letter with its reason (missing_id), not a crash.
"""
from __future__ import annotations

import argparse
import os

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from neural_ingest.beam import WriteToOpenSearch

PRODUCTS = [
    {"id": "p1", "name": "Trail running shoe", "price": 119.0, "tags": ["running", "outdoor"]},
    {"id": "p2", "name": "Rain jacket", "price": 89.5, "tags": ["outdoor"]},
    {"id": "p3", "name": "Water bottle", "price": 12.0, "tags": []},
    {"name": "A product nobody gave an id"},
]


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opensearch-url", default=os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200"),
                        help="OpenSearch node (default: $OPENSEARCH_URL, else http://127.0.0.1:9200)")
    parser.add_argument("--index", default="example-products")
    parser.add_argument("--dead-letters", default="dead-letters/write-dicts", help="prefix of the dead-letter JSONL files")
    return parser.parse_known_args(argv)  # the rest are Beam's options (--runner ...)


def main(argv: list[str] | None = None) -> int:
    args, beam_args = parse(argv)
    with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
        result = p | beam.Create(PRODUCTS) | WriteToOpenSearch(index=args.index, hosts=[args.opensearch_url])
        _ = (
            result.failed
            | beam.Map(lambda letter: letter.to_json("write-dicts"))
            | beam.io.WriteToText(args.dead_letters, file_name_suffix=".jsonl")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
