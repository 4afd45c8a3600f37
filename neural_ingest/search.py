"""Query time: encode the query with the same model the pipeline used, and search the sink."""
from __future__ import annotations

from neural_ingest.config import EncoderConfig, PipelineConfig, encoder_field
from neural_ingest.encoders import make_encoder
from neural_ingest.model_info import ModelInfo, Vector, as_dense, as_sparse
from neural_ingest.sinks import make_sink
from neural_ingest.sinks.base import DenseQuery, Hit, Searcher, SinkError, SparseQuery


def _encoder_of_kind(cfg: PipelineConfig, kind: str, mode: str) -> EncoderConfig:
    candidates = [c for c in cfg.encoders if getattr(c, "kind", "dense") == kind]
    if not candidates:
        kinds = sorted({getattr(c, "kind", "dense") for c in cfg.encoders})
        hint = "hybrid needs a dense and a sparse encoder; " if mode == "hybrid" else ""
        raise ValueError(f"{hint}the config has no {kind} encoder (it has: {', '.join(kinds)}); use --mode {kinds[0]}")
    return candidates[0]


def encode_query(enc_cfg: EncoderConfig, query: str) -> tuple[str, ModelInfo, Vector]:
    """(field, model info, query vector): the query encoded the way the encoder's model family expects."""
    encoder = make_encoder(enc_cfg)
    loaded = encoder.acquire()
    return encoder_field(enc_cfg), loaded.info, encoder.encode_queries(loaded, [query])[0]


def no_hits_reason(cfg: PipelineConfig, mode: str) -> str:
    """Why a search found nothing, for the one line `search` prints instead of an empty table."""
    if make_sink(cfg.sink).searchable_count() == 0:
        return f"{cfg.sink.describe()} holds no documents: run `neural-ingest run CONFIG` first"
    if mode == "sparse":
        return "no document shares a token with the query"
    return f"nothing in {cfg.sink.describe()} matched"


def search(
    cfg: PipelineConfig, query: str, k: int = 10, mode: str = "dense", weights: tuple[float, float] | None = None
) -> list[Hit]:
    """Search with the pipeline's own model(s). ``weights`` (dense, sparse) only apply to ``hybrid``.

    A missing index / dataset raises SinkError before the model loads; an empty one returns [] at once.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1 (got {k})")
    sink = make_sink(cfg.sink, chunking=cfg.chunking)  # chunked: documents scored by their best chunk (Hit.passage)
    if sink.searchable_count() == 0:  # a missing index / dataset: SinkError here, before any model loads
        return []
    searcher = sink.searcher([encoder_field(e) for e in cfg.encoders])
    from opensearchpy import exceptions as os_exc

    try:
        return _search(searcher, cfg, query, k, mode, weights)
    except os_exc.OpenSearchException as e:  # a cluster error is one line naming the cluster, not a bug's traceback
        from neural_ingest.sinks.opensearch_client import connection_problem

        if cfg.sink.type != "opensearch":
            raise
        raise SinkError(connection_problem(cfg.sink, e)) from None


def _dense_query(enc_cfg: EncoderConfig, query: str) -> DenseQuery:
    field, info, vector = encode_query(enc_cfg, query)
    return field, info, as_dense(vector)


def _sparse_query(enc_cfg: EncoderConfig, query: str) -> SparseQuery:
    field, info, vector = encode_query(enc_cfg, query)
    return field, info, as_sparse(vector)


def _search(sink: Searcher, cfg: PipelineConfig, query: str, k: int, mode: str, weights: tuple[float, float] | None) -> list[Hit]:
    if mode == "hybrid":
        dense = _dense_query(_encoder_of_kind(cfg, "dense", mode), query)
        sparse = _sparse_query(_encoder_of_kind(cfg, "sparse", mode), query)
        return sink.search_hybrid(dense, sparse, k, weights)
    enc_cfg = _encoder_of_kind(cfg, mode, mode)
    if mode == "sparse":
        return sink.search_sparse(*_sparse_query(enc_cfg, query), k)
    return sink.search(*_dense_query(enc_cfg, query), k)
