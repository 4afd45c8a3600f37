"""Index mapping derived from the loaded models, and the check of an existing index against it.

Chunked documents (sinks/opensearch_chunks.py): with ``storage: nested`` the encoder fields sit in a nested
field (``chunks``) beside the chunk's text, start, end and index; with ``storage: separate`` they stay at the
top level beside parent_id, chunk_index, chunk_start and chunk_end.
"""
from __future__ import annotations

from typing import Any

from neural_ingest.chunking import CHUNK_END, CHUNK_INDEX, CHUNK_START, PARENT_ID
from neural_ingest.config import OpenSearchSinkConfig
from neural_ingest.encoders.base import ModelInfo
from neural_ingest.sinks.base import ChunkLayout


def space_type_for(cfg: OpenSearchSinkConfig, info: ModelInfo) -> str:
    """Config wins; otherwise the model's similarity function decides (cosine -> cosinesimil, dot -> innerproduct)."""
    return cfg.knn.space_type or info.space_type or "cosinesimil"


def field_mapping(cfg: OpenSearchSinkConfig, info: ModelInfo) -> dict[str, Any]:
    if info.kind == "sparse":
        return {"type": "rank_features"}
    knn = cfg.knn
    params: dict[str, Any] = {"m": knn.m, "ef_construction": knn.ef_construction}
    if knn.engine == "faiss" and knn.ef_search is not None:  # faiss keeps its search queue in the index it builds
        params["ef_search"] = knn.ef_search
    if knn.encoder == "sq_fp16":
        params["encoder"] = {"name": "sq", "parameters": {"type": "fp16"}}
    out: dict[str, Any] = {
        "type": "knn_vector",
        "dimension": info.dimension,
        "method": {"name": "hnsw", "engine": knn.engine, "space_type": space_type_for(cfg, info), "parameters": params},
    }
    if knn.mode:
        out["mode"] = knn.mode
    if knn.compression_level:
        out["compression_level"] = knn.compression_level
    return out


def chunk_properties(props: dict[str, Any], plan: ChunkLayout) -> dict[str, Any]:
    """The encoder fields' mappings (``props``) placed for chunked storage."""
    if plan.storage == "nested":
        inner = {
            "text": {"type": "text"},
            "start": {"type": "integer"},
            "end": {"type": "integer"},
            "index": {"type": "integer"},
            **props,
        }
        return {plan.field: {"type": "nested", "properties": inner}}
    return {
        **props,
        PARENT_ID: {"type": "keyword"},
        CHUNK_INDEX: {"type": "integer"},
        CHUNK_START: {"type": "integer"},
        CHUNK_END: {"type": "integer"},
    }


def chunk_mapping_problems(props: dict[str, Any], plan: ChunkLayout) -> tuple[list[str], dict[str, Any]]:
    """(problems, the properties the encoder fields are found in) for an existing index."""
    if plan.storage == "nested":
        have = props.get(plan.field)
        if have is None:
            return [], {}  # the nested field is added to the mapping
        if have.get("type") != "nested":
            return [
                (
                    f"field {plan.field!r} is {have.get('type') or 'object'!r} in the index but chunking (storage nested) "
                    "needs a 'nested' field: use another chunking.field or a new index"
                )
            ], {}
        return [], have.get("properties", {})
    problems: list[str] = []
    parent = props.get(PARENT_ID)
    if parent is not None and parent.get("type") != "keyword":
        problems.append(f"field {PARENT_ID!r} is {parent.get('type')!r} in the index but separate chunks need 'keyword'")
    if plan.field in props and props[plan.field].get("type") == "nested":
        problems.append(
            f"index holds nested chunks in {plan.field!r} but chunking.storage is separate: use a new index"
        )
    return problems, props


def index_body(cfg: OpenSearchSinkConfig, fields: dict[str, ModelInfo], chunking: ChunkLayout | None = None) -> dict[str, Any]:
    """Settings and mappings for a new index holding ``fields`` (name -> model info); with ``chunking``
    the fields sit in the nested chunk field, or beside parent_id."""
    props: dict[str, Any] = {name: field_mapping(cfg, info) for name, info in fields.items()}
    if chunking is not None:
        props = chunk_properties(props, chunking)
    props[cfg.text_field] = {"type": "text"} if cfg.store_text else {"type": "text", "index": False}
    settings: dict[str, Any] = {"number_of_shards": cfg.shards, "number_of_replicas": cfg.replicas}
    if any(i.kind == "dense" for i in fields.values()):
        settings["index.knn"] = True
        if cfg.knn.ef_search is not None:  # every query's HNSW queue, whatever k the client asks for
            settings["index.knn.algo_param.ef_search"] = cfg.knn.ef_search
    return {"settings": settings, "mappings": {"properties": props}}


def knn_engines(mapping: dict[str, Any]) -> set[str]:
    """The HNSW engines of an index's knn_vector fields, nested ones included; a field without a method
    gets the plugin's default engine, faiss (OpenSearch 2.19 and 3.x)."""
    found: set[str] = set()
    for p in (mapping.get("properties") or {}).values():
        if p.get("type") == "knn_vector":
            found.add((p.get("method") or {}).get("engine") or ("model" if p.get("model_id") else "faiss"))
        found |= knn_engines(p)
    return found


def mapping_problems(
    existing: dict[str, Any], cfg: OpenSearchSinkConfig, fields: dict[str, ModelInfo], chunking: ChunkLayout | None = None
) -> list[str]:
    """What in an existing index's mapping conflicts with the models (each problem names both values)."""
    props = existing.get("properties", {})
    problems: list[str] = []
    if chunking is not None:  # the encoder fields live inside the nested chunk field (or beside parent_id)
        problems, props = chunk_mapping_problems(props, chunking)
    for name, info in fields.items():
        want = field_mapping(cfg, info)
        have = props.get(name)
        if have is None:
            continue  # dynamic mapping would guess wrong, but adding a new field is allowed: put_mapping does it
        if have.get("type") != want["type"]:
            problems.append(f"field {name!r} is {have.get('type')!r} in the index but the model needs {want['type']!r}")
            continue
        if want["type"] == "knn_vector":
            if int(have.get("dimension", -1)) != want["dimension"]:
                problems.append(
                    f"field {name!r} has dimension {have.get('dimension')} in the index but model {info.name} "
                    f"gives {want['dimension']}"
                )
            have_space = (have.get("method") or {}).get("space_type") or have.get("space_type")
            if have_space and have_space != want["method"]["space_type"]:
                problems.append(
                    f"field {name!r} uses space_type {have_space!r} in the index but the model needs "
                    f"{want['method']['space_type']!r}"
                )
    return problems
