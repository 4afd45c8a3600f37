"""Read a JSONL file in your own Beam pipeline and embed and index it with EmbedAndIndex, the CLI's encode and
write steps: the index is created with a k-NN mapping from the model, and every record that cannot be
indexed (no id, no text, bad metadata, a failed request) is a dead letter with its reason.

    python examples/embed_and_index.py --opensearch-url http://127.0.0.1:9200 --index example-docs \\
        --input data/sample/docs.jsonl
"""
from __future__ import annotations

import argparse
import json
import os

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from neural_ingest.beam import EmbedAndIndex, WriteToOpenSearch
from neural_ingest.config import SentenceTransformersEncoderConfig

HERE = os.path.dirname(os.path.abspath(__file__))


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opensearch-url", default=os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200"),
                        help="OpenSearch node (default: $OPENSEARCH_URL, else http://127.0.0.1:9200)")
    parser.add_argument("--index", default="example-docs")
    parser.add_argument("--input", default=os.path.join(HERE, "..", "data", "sample", "docs.jsonl"))
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--dead-letters", default="dead-letters/embed-and-index", help="prefix of the dead-letter JSONL files")
    return parser.parse_known_args(argv)


def parse_line(line: str):
    """A JSON object, or the line itself when it is not JSON: EmbedAndIndex dead-letters it (not_an_object)."""
    try:
        return json.loads(line)
    except ValueError:
        return line


def main(argv: list[str] | None = None) -> int:
    args, beam_args = parse(argv)
    minilm = SentenceTransformersEncoderConfig(model=args.model, device="cpu", batch_size=32)
    sink = WriteToOpenSearch(index=args.index, hosts=[args.opensearch_url])
    with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
        result = (
            p
            | beam.io.ReadFromText(args.input)
            | beam.Map(parse_line)
            | EmbedAndIndex(minilm, sink, text_fields=["title", "body"], metadata_fields=["topic", "year"])
        )
        _ = (
            (result.failed, result.skipped)
            | beam.Flatten()
            | beam.Map(lambda letter: letter.to_json("embed-and-index"))
            | beam.io.WriteToText(args.dead_letters, file_name_suffix=".jsonl")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
