"""The bodies ML Commons' register calls take, from a catalogue entry: what the OpenSearch pretrained-models page prescribes."""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from neural_ingest.catalogue import CatalogueEntry

ML = "/_plugins/_ml"
CHUNK_SIZE = 10_000_000  # ML Commons rejects chunks over 10 MB ("Chunk size exceeds 10MB")
LOCAL_UPLOAD_SETTING = "plugins.ml_commons.allow_registering_model_via_local_file"
URL_UPLOAD_SETTING = "plugins.ml_commons.allow_registering_model_via_url"


def register_body(entry: CatalogueEntry, model_format: str = "TORCH_SCRIPT") -> dict[str, Any]:
    """The ``_register`` body the pretrained-models page prescribes for ``entry``.

    Dense: ``name``, ``version``, ``model_format`` (ML Commons resolves the rest from its pretrained
    catalogue). Sparse: the full body, ``function_name`` included, with the model's own ``url`` and its
    ``model_content_hash_value`` where the page gives one (only doc-v1's; without a hash ML Commons
    does not verify the download).
    """
    fmt = entry.format(model_format)
    if entry.kind == "dense":
        return {"name": entry.name, "version": entry.version, "model_format": fmt.model_format}
    body: dict[str, Any] = {
        "name": entry.name,
        "version": entry.version,
        "description": entry.description,
        "model_format": fmt.model_format,
        "function_name": entry.function_name,
        "url": fmt.model_url,
    }
    if entry.model_content_hash_value:
        body["model_content_hash_value"] = entry.model_content_hash_value
    return body


def model_config(entry: CatalogueEntry) -> dict[str, Any]:
    """ML Commons ``model_config`` for a local artifact, from the catalogue's figures."""
    if entry.kind == "dense":
        return {
            "model_type": entry.model_type,
            "embedding_dimension": entry.dimension,
            "framework_type": "sentence_transformers",
            "pooling_mode": (entry.pooling or "mean").upper(),
            "normalize_result": bool(entry.normalized),
            "model_max_length": entry.max_seq_length,
        }
    # Sparse models have no embedding dimension; ML Commons' parser still wants these keys.
    return {"model_type": entry.model_type, "embedding_dimension": 1, "framework_type": "sentence_transformers"}


def register_meta_body(entry: CatalogueEntry, artifact: Path, model_format: str = "TORCH_SCRIPT") -> dict[str, Any]:
    """The ``_register_meta`` body for uploading ``artifact`` (a model zip) in chunks."""
    size = artifact.stat().st_size
    return {
        "name": entry.name,
        "version": entry.version,
        "description": entry.description,
        "model_format": entry.format(model_format).model_format,
        "function_name": entry.function_name,
        "model_content_size_in_bytes": size,
        "model_content_hash_value": sha256_file(artifact),
        "total_chunks": max(1, math.ceil(size / CHUNK_SIZE)),
        "model_config": model_config(entry),
    }


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- what a failure means
