"""What makes a stored vector reusable: the hash of the text that was embedded, and the identity of
the models that embedded it.

- ``content_hash``: sha256 of the document text exactly as it is encoded (the joined text fields).
  Metadata is not part of it: a metadata-only change needs no re-encoding, and ``reindex`` writes
  every document's metadata fresh from the source anyway.
- ``model_identity``: per encoder field, the loaded model (name, kind, dimension, similarity,
  normalization, max sequence length), a fingerprint of its weight files where they are local
  (a "version" that changes when the files change), the document-side settings from the config
  (runtime knobs such as batch size, device, threads, timeouts and secrets left out), and the
  chunking settings when documents are chunked. ``identity_hash`` is a short stable hash of it,
  stored in every document and in the index's ``_meta``.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from neural_ingest.encoders.base import ModelInfo

# Encoder config fields that change how a run goes, not what vectors it produces.
RUNTIME_FIELDS = frozenset({
    "field", "batch_size", "device", "threads", "models_dir", "model_path", "concurrency", "timeout",
    "connect_timeout", "retry", "rate_limit", "request_batch_size", "max_request_chars", "max_request_tokens",
    "chars_per_token", "isolate_failures", "probe", "api_key", "headers", "credential", "verify_certs",
    "ca_certs", "username", "password", "query_mode", "query_model_id", "idf_path", "name",
})
# For these, `url` is where the service runs (a cluster, an API endpoint), not which model it is.
_URL_IS_NOT_THE_MODEL = {"opensearch_ml", "openai"}
# ModelInfo.extra keys that shape document vectors (sparse models).
_EXTRA_KEYS = ("activation", "pooling", "prune")
# Files in a model directory that do not change its vectors.
_SKIP_DIRS = {"onnx", "openvino", ".cache", ".git"}


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_FP_CACHE: dict[tuple[Any, ...], str] = {}
_FP_LOCK = threading.Lock()


def weights_fingerprint(path: str | os.PathLike[str] | None) -> str | None:
    """sha256 over a model directory's files (names and contents; READMEs, ONNX/OpenVINO exports and
    hidden files left out), cached per (name, size, mtime) listing. None without a local directory."""
    if not path or not Path(path).is_dir():
        return None
    root = Path(path)
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.lower().startswith("readme"):
                continue
            p = Path(dirpath) / name
            st = p.stat()
            files.append((p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    key = (str(root.resolve()), tuple(files))
    with _FP_LOCK:
        if key in _FP_CACHE:
            return _FP_CACHE[key]
    h = hashlib.sha256()
    for rel, _size, _mtime in files:
        h.update(rel.encode("utf-8") + b"\0")
        with open(root / rel, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    digest = h.hexdigest()[:16]
    with _FP_LOCK:
        _FP_CACHE[key] = digest
    return digest


def encoder_settings(enc_cfg: Any) -> dict[str, Any]:
    """The document-side settings of an encoder config (runtime knobs and secrets left out)."""
    data = enc_cfg.model_dump(mode="json")
    skip = set(RUNTIME_FIELDS)
    if data.get("type") in _URL_IS_NOT_THE_MODEL:
        skip.add("url")
    return {k: v for k, v in sorted(data.items()) if k not in skip}


def model_identity(cfg: Any, fields: dict[str, ModelInfo]) -> dict[str, Any]:
    """A JSON-able description of everything that decides the stored vectors."""
    from neural_ingest.config import encoder_field

    by_field = {encoder_field(e): e for e in cfg.encoders}
    out: dict[str, Any] = {"fields": {}}
    for name, info in sorted(fields.items()):
        enc = by_field.get(name)
        out["fields"][name] = {
            "model": info.name,
            "kind": info.kind,
            "dimension": info.dimension,
            "similarity": info.similarity,
            "normalized": info.normalized,
            "max_seq_length": info.max_seq_length,
            "weights": weights_fingerprint(info.extra.get("path")),
            "extra": {k: info.extra[k] for k in _EXTRA_KEYS if k in info.extra},
            "settings": encoder_settings(enc) if enc is not None else {},
        }
    chunking = getattr(cfg, "chunking", None)
    if chunking is not None and getattr(chunking, "mode", "truncate") != "truncate":
        out["chunking"] = chunking.model_dump(mode="json")
    return out


def identity_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]
