"""Encoder implementations, picked from config by :func:`make_encoder`."""
from __future__ import annotations

import importlib
from typing import Any

from neural_ingest.encoders.base import EncodeError, Encoder, Loaded, ModelInfo

# config `type` -> "module:Class"; imported lazily so a dense-only run never imports HTTP clients etc.
ENCODERS: dict[str, str] = {
    "sentence_transformers": "neural_ingest.encoders.dense:SentenceTransformerEncoder",
    "neural_sparse": "neural_ingest.encoders.sparse:NeuralSparseEncoder",
    "opensearch_ml": "neural_ingest.encoders.remote.encoder:RemoteEncoder",
    "openai": "neural_ingest.encoders.remote.encoder:RemoteEncoder",
    "tei": "neural_ingest.encoders.remote.encoder:RemoteEncoder",
    "http": "neural_ingest.encoders.remote.encoder:RemoteEncoder",
    "hash": "neural_ingest.encoders.hash:HashEncoder",  # benchmark / test only: no model
}


def make_encoder(cfg: Any) -> Encoder[Any]:
    """Build the encoder a config block describes."""
    try:
        target = ENCODERS[cfg.type]
    except KeyError:
        raise ValueError(f"unknown encoder type {cfg.type!r}; known: {sorted(ENCODERS)}") from None
    module, cls = target.split(":")
    encoder: Encoder[Any] = getattr(importlib.import_module(module), cls)(cfg)
    return encoder


__all__ = ["ENCODERS", "EncodeError", "Encoder", "Loaded", "ModelInfo", "make_encoder"]
