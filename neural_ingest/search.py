"""Query time: encode the query with the same model the pipeline used, and search the sink."""
from __future__ import annotations

from neural_ingest.config import PipelineConfig, encoder_field
from neural_ingest.encoders import make_encoder
from neural_ingest.sinks import make_sink
from neural_ingest.sinks.base import Hit


def _encoder_of_kind(cfg: PipelineConfig, kind: str, mode: str):
    candidates = [c for c in cfg.encoders if getattr(c, "kind", "dense") == kind]
    if not candidates:
        kinds = sorted({getattr(c, "kind", "dense") for c in cfg.encoders})
        hint = "hybrid needs a dense and a sparse encoder; " if mode == "hybrid" else ""
        raise ValueError(f"{hint}the config has no {kind} encoder (it has: {', '.join(kinds)}); use --mode {kinds[0]}")
    return candidates[0]


def encode_query(enc_cfg, query: str):
    """(field, model info, query vector): the query encoded the way the encoder's model family expects."""
    encoder = make_encoder(enc_cfg)
    loaded = encoder.acquire()
    return encoder_field(enc_cfg), loaded.info, encoder.encode_queries(loaded, [query])[0]


def search(
    cfg: PipelineConfig, query: str, k: int = 10, mode: str = "dense", weights: tuple[float, float] | None = None
) -> list[Hit]:
    """Search with the pipeline's own model(s). ``weights`` (dense, sparse) only apply to ``hybrid``."""
    sink = make_sink(cfg.sink)
    if cfg.chunking.mode == "chunk":  # documents scored by their best chunk, which comes back as Hit.passage
        from neural_ingest.sinks.chunked import chunked_searcher

        sink = chunked_searcher(sink, cfg.chunking, [encoder_field(e) for e in cfg.encoders])
    if mode == "hybrid":
        dense = encode_query(_encoder_of_kind(cfg, "dense", mode), query)
        sparse = encode_query(_encoder_of_kind(cfg, "sparse", mode), query)
        return sink.search_hybrid(dense, sparse, k, weights)
    field, info, vector = encode_query(_encoder_of_kind(cfg, mode, mode), query)
    if mode == "sparse":
        return sink.search_sparse(field, info, vector, k)
    return sink.search(field, info, vector, k)
