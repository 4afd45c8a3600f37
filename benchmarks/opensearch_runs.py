"""Indexing alone, the same vectors two ways: ``raw_bulk`` (opensearch-py's ``helpers.bulk``) against
``indexing_stage`` (the pipeline's own sink stage). Also the sink stage loader benchmarks/recall.py builds
its indices with.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from benchmarks import opensearch_node
from benchmarks.common import timed
from benchmarks.harness import Bench


def sink_config(url: str | None, index: str, **extra: Any) -> Any:
    """The OpenSearch sink config every indexing measurement shares (lucene HNSW, pipeline defaults)."""
    from neural_ingest.config import OpenSearchSinkConfig

    return OpenSearchSinkConfig(hosts=[url], index=index, knn={"engine": "lucene"}, **extra)


def encoded_documents(paths: tuple[str, str]) -> Iterator[Any]:
    """Documents as the encoder hands them to the sink: corpus records with their vectors."""
    import numpy as np

    from benchmarks.corpus import load_texts
    from neural_ingest.records import Document

    corpus, vectors = paths
    for r, v in zip(load_texts(corpus), np.load(vectors)):
        yield Document(id=r["id"], text=r["text"], metadata={"source": r["source"]}, embeddings={"embedding": v})


def load_through_sink(cfg: Any, fields: dict[str, Any], corpus_path: str, vectors_path: str) -> None:
    """A fresh index ``cfg.index`` loaded by the pipeline's sink stage (prepare, write, finalize) on the DirectRunner.

    The stage reads what the encoder would hand it from disk: a Create of 3000 vectors would instead
    pickle and bz2-compress them all into the pipeline definition (seconds, not indexing).
    """
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from neural_ingest.sinks.opensearch import OpenSearchSink

    sink = OpenSearchSink(cfg)
    sink.chunking = None
    sink.prepare(fields, "bench")
    p = beam.Pipeline(options=PipelineOptions(["--runner", "DirectRunner"]))
    _ = (
        p
        | beam.Create([(corpus_path, vectors_path)], reshuffle=False)
        | beam.FlatMap(encoded_documents)
        | sink.write("bench", fields, 3600)
    )
    p.run().wait_until_finish()
    sink.finalize("bench", True)


def raw_bulk(bench: Bench, vectors: Any) -> None:
    """``helpers.bulk`` of the corpus and its vectors into a fresh index with the sink's mapping, then a refresh."""


    client = opensearch_node.client(bench.os_url)
    cfg = sink_config(bench.os_url, f"bench-rawbulk-{uuid.uuid4().hex[:6]}")
    fields = {"embedding": bench.w.held.info}
    records = bench.w.records

    def go() -> None:
        bulk_baseline(client, cfg, fields, len(records), (
            {"_index": cfg.index, "_id": r["id"], "_source": {"source": r["source"], "text": r["text"], "embedding": v.tolist()}}
            for r, v in zip(records, vectors)
        ))

    secs, _ = timed(go)
    count = client.count(index=cfg.index)["count"]
    client.indices.delete(index=cfg.index, ignore=[404])
    bench.record("raw_bulk", None, secs, len(records), count_in_index=count, chunk_size=cfg.bulk.max_docs)


def bulk_baseline(client: Any, cfg: Any, fields: dict[str, Any], expected: int, actions: Iterable[dict[str, Any]]) -> None:
    """The raw baseline the sink stage is measured against: a fresh index with the pipeline's mapping, opensearch-py's
    ``helpers.bulk`` in the sink's request sizes, a refresh."""
    from opensearchpy import helpers

    from neural_ingest.sinks.mapping import index_body

    client.indices.create(index=cfg.index, body=index_body(cfg, fields))
    ok, errors = helpers.bulk(client, actions, chunk_size=cfg.bulk.max_docs, max_chunk_bytes=cfg.bulk.max_bytes,
                              request_timeout=120)
    if errors or ok != expected:
        raise RuntimeError(f"raw bulk: {ok} ok, errors {errors[:3]}")
    client.indices.refresh(index=cfg.index)


def indexing_stage(bench: Bench, vectors: Any, name: str = "indexing_stage", **sink_extra: Any) -> None:
    """The pipeline's sink stage fed the same vectors (``sink_extra``: sink settings an ablation changes)."""
    import numpy as np

    vec_path = bench.work / "vectors.npy"
    np.save(vec_path, np.asarray(vectors, dtype=np.float32))
    cfg = sink_config(bench.os_url, f"bench-stage-{uuid.uuid4().hex[:6]}", **sink_extra)
    fields = {"embedding": bench.w.held.info}
    secs, _ = timed(lambda: load_through_sink(cfg, fields, bench.w.corpus.path, str(vec_path)))
    client = opensearch_node.client(bench.os_url)
    count = client.count(index=cfg.index)["count"]
    client.indices.delete(index=cfg.index, ignore=[404])
    bench.record(
        name,
        None,
        secs,
        len(bench.w.records),
        count_in_index=count,
        **{k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in sink_extra.items()},
    )
