"""What a reindex will do (alias, live index, new index, mode) and the index operations it uses: create, clone, refresh."""
from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from neural_ingest.config import (
    OpenSearchSinkConfig,
    OpenSearchSourceConfig,
    PipelineConfig,
    ReindexConfig,
)
from neural_ingest.fingerprint import identity_hash, model_identity
from neural_ingest.model_info import ModelInfo
from neural_ingest.sinks import aliases
from neural_ingest.sinks.base import SinkError
from neural_ingest.sinks.lock import IndexLock

log = logging.getLogger(__name__)


EXIT_VALIDATION_FAILED = 4


EXIT_LOCKED = 5


class ReindexError(SinkError):
    """A reindex problem the user fixes (config, alias taken by an index, nothing to roll back)."""


@dataclass
class ReindexPlan:
    alias: str
    live: str | None
    live_is_index: bool
    new_index: str
    mode: str  # incremental | full
    reason: str
    model_hash: str
    source: str
    keep_last: int
    would_delete: list[str]
    swap_actions: list[dict[str, Any]]
    validation: dict[str, Any]
    lock: str
    model_identity: dict[str, Any] = field(default_factory=dict)
    live_count: int | None = None
    allow_shrink: bool = False
    unfinished: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> _meta, removed before building

    def shrink_line(self) -> str:
        v = self.validation
        floor = f"at least min_documents {v['min_documents']}"
        if self.live is None:
            guard = f"no live index (first run): max_deleted_ratio does not apply; the new index needs {floor}"
        else:
            keep = self.live_count - math.floor(v["max_deleted_ratio"] * self.live_count) if self.live_count is not None else "?"
            guard = (f"live index {self.live} has {self.live_count} documents; the new index needs at least {keep} "
                     f"(max_deleted_ratio {v['max_deleted_ratio']:g}) and {floor}")
        return guard + ("; waived by --allow-shrink" if self.allow_shrink else "; --allow-shrink waives it for a planned drop")

    def lines(self) -> list[str]:
        v = self.validation
        budget = (
            f"at most {v['max_failed']} dead letters"
            if v.get("max_failed") is not None
            else "dead letters within the run's error budget"
        )
        retrieval = (
            f"{v['sample_queries']} self-retrieval queries (top {v['top_k']}, {v['query_vectors']} vectors) "
            f">= {v['min_self_retrieval']:.0%}" if v["sample_queries"] else "self-retrieval off"
        )
        return [
            f"alias:       {self.alias} -> {self.live or '(none yet: this run creates it)'}"
            + (" [a real index: --replace-index deletes it in the swap]" if self.live_is_index else ""),
            f"new index:   {self.new_index} (mapping from the current models; model identity {self.model_hash})",
            f"source:      {self.source}",
            f"mode:        {self.mode}: {self.reason}",
            f"validation:  document count within {v['count_tolerance']:.1%} of the source; {budget}; {retrieval}; "
            + (f"recall@k >= {v['min_recall']:g}" if v.get("min_recall") is not None else "recall not gated"),
            f"shrink:      {self.shrink_line()}",
            "unfinished:  left by runs that did not finish, removed before building: "
            + aliases.describe_unfinished(self.unfinished),
            f"swap:        one _aliases request {self.swap_actions}",
            f"retention:   keep the last {self.keep_last} (plus the live index and its rollback target); "
            f"would delete: {', '.join(self.would_delete) or 'nothing'}",
            f"lock:        {self.lock}",
        ]


def settings(cfg: PipelineConfig) -> tuple[ReindexConfig, str]:
    sink = opensearch_sink(cfg)
    rcfg = cfg.reindex or ReindexConfig()
    return rcfg, rcfg.alias or sink.index


def opensearch_sink(cfg: PipelineConfig) -> OpenSearchSinkConfig:
    """The sink's settings, which a reindex needs to be OpenSearch's."""
    if not isinstance(cfg.sink, OpenSearchSinkConfig):
        raise ReindexError(
            "reindex builds OpenSearch indices behind an alias: set sink.type: opensearch (sink.index names the alias)"
        )
    return cfg.sink


def chunk_mode(cfg: PipelineConfig) -> str | None:
    ch = getattr(cfg, "chunking", None)
    return getattr(ch, "storage", "nested") if ch is not None and getattr(ch, "mode", "truncate") == "chunk" else None


def live_reader(cfg: PipelineConfig, index: str) -> OpenSearchSourceConfig:
    """A source config that reads ``index`` with the sink's connection settings."""
    s = opensearch_sink(cfg)
    return OpenSearchSourceConfig(
        type="opensearch", hosts=s.hosts, index=index, username=s.username, password=s.password,
        aws_sigv4=s.aws_sigv4, verify_certs=s.verify_certs, ca_certs=s.ca_certs, timeout=s.bulk.timeout,
        text_fields=[s.text_field], deduplicate=False, page_size=200,
    )


def open_lock(client: Any, rcfg: ReindexConfig, alias: str, run_id: str | None = None) -> IndexLock:
    return IndexLock(client, alias, rcfg.lock_ttl, index=rcfg.lock_index, run_id=run_id)


def describe_lock(lock: IndexLock) -> tuple[str, str | None]:
    """(what the dry run says about the lock, the run id holding it now or None)."""
    try:
        current = lock.holder() if lock.client.indices.exists(index=lock.index) else None
    except Exception as e:  # noqa: BLE001 - a dry run reports, it does not fail on this
        return f"unknown ({type(e).__name__})", None
    if current is None:
        return f"free ({lock.index}/{lock.key})", None
    doc = current[0]
    if int(doc.get("expires_at_ms", 0)) <= int(time.time() * 1000):
        return f"expired lock left by {doc.get('owner')} (run {doc.get('run_id')}): the next run takes it over", None
    return f"held by {doc.get('owner')} (run {doc.get('run_id')}) until {doc.get('expires_at')}", doc.get("run_id")


def plan_reindex(cfg: PipelineConfig, client: Any, fields: dict[str, ModelInfo], *, full: bool = False,
                 replace_index: bool = False, now: dt.datetime | None = None, lock_state: str = "",
                 running: str | None = None, allow_shrink: bool = False) -> ReindexPlan:
    """What a run will do. ``running``: the run id holding the lock, whose index is never "unfinished"."""
    rcfg, alias = settings(cfg)
    identity = model_identity(cfg, fields)
    mh = identity_hash(identity)
    live_is_index = aliases.concrete_index_named(client, alias)
    if live_is_index and not replace_index:
        raise ReindexError(
            f"{alias!r} is an index, not an alias, so the alias cannot take its name. Either pass --replace-index "
            f"(the index is deleted in the same request that creates the alias; its vectors are reused first, but "
            f"there is then nothing to roll back to), or set reindex.alias to a new name and point readers at it"
        )
    live = alias if live_is_index else aliases.live_index(client, alias)
    managed = aliases.managed_indices(client, alias)
    taken = set(managed) | set(_existing_like(client, alias))
    new = aliases.new_index_name(alias, now, taken)

    chunked = chunk_mode(cfg)
    if live is None:
        mode, reason = "full", "first run: no live index, every document is encoded"
    else:
        meta = aliases.get_meta(client, live)
        if full:
            mode, reason = "full", "--full: every document is encoded"
        elif not rcfg.incremental:
            mode, reason = "full", "reindex.incremental is false: every document is encoded"
        elif chunked:
            mode, reason = "full", "chunking.mode is chunk: vectors are reused per whole document only, so all are encoded"
        elif not meta:
            mode, reason = "full", f"{live} was not built by reindex (no model identity stored): every document is encoded"
        elif meta.get("model_hash") != mh:
            mode, reason = "full", (
                f"model identity changed ({meta.get('model_hash')} in {live}, now {mh}): full rebuild, every document is encoded"
            )
        elif cfg.source.type != "opensearch" and meta.get("index_hash") != index_hash(cfg, fields):
            # a clone keeps the live index's settings and mapping: changed ones (HNSW parameters, engine,
            # shards, text field) land only in an index created from the config
            mode, reason = (
                "full",
                (
                    f"the index settings or mapping in the config changed since {live} was built (index hash "
                    f"{meta.get('index_hash')}, now {index_hash(cfg, fields)}): full rebuild into a new index, "
                    "every document is encoded"
                    if meta.get("index_hash")
                    else f"{live} does not record the settings and mapping it was created with "
                    "(built by an older neural-ingest): "
                    "rebuilt in full once, so that the next nights can clone it"
                ),
            )
        else:
            mode, reason = "incremental", (
                f"unchanged documents reuse their vectors from {live}; new and changed ones are encoded; "
                "documents gone from the source are left out"
            ) if cfg.source.type == "opensearch" else (
                f"the new index is a _clone of {live} and only the changes are written: unchanged documents are kept "
                "as they are, metadata-only changes reuse their stored vectors, new and changed ones are encoded, "
                "documents gone from the source are deleted from the clone (never from the live index)"
            )
    # Indices of runs that did not finish go first; then retention as it will be after the swap (the
    # new index live, the alias gone from the old one).
    unfinished = aliases.unfinished(client, alias, live, running, managed)
    pinned = {n for n, a in managed.items() if set(a) - {alias}}
    names = [n for n in managed if n not in unfinished] + [new]
    target = aliases.rollback_target(client, alias, new, list(managed))
    keep = set(names[-rcfg.keep_last:]) | {new} | ({target} if target else set()) | pinned
    return ReindexPlan(
        alias=alias, live=live, live_is_index=live_is_index, new_index=new, mode=mode, reason=reason, model_hash=mh,
        source=_describe_source(cfg), keep_last=rcfg.keep_last, would_delete=[n for n in names if n not in keep],
        swap_actions=aliases.swap_actions(alias, new, live, live_is_index),
        validation=rcfg.validation.model_dump(), lock=lock_state, model_identity=identity,
        live_count=_count(client, live) if live else None, allow_shrink=allow_shrink, unfinished=unfinished,
    )


def index_hash(cfg: PipelineConfig, fields: dict[str, ModelInfo]) -> str:
    """Identity of the index the config creates (settings and mappings, sinks/mapping.index_body): an
    incremental night clones the live index only while it is the same, since a clone keeps the old ones."""
    from neural_ingest.sinks.mapping import index_body

    return identity_hash(index_body(opensearch_sink(cfg), fields))


def _count(client: Any, index: str) -> int:
    return int(client.count(index=index)["count"])


def _existing_like(client: Any, alias: str) -> list[str]:
    """Every index name starting with ``<alias>-`` (managed or not), so a new name never collides."""
    from opensearchpy import exceptions as os_exc

    try:
        return list(client.indices.get_alias(index=f"{alias}-*", params={"expand_wildcards": "all"}))
    except os_exc.NotFoundError:
        return []


def _describe_source(cfg: PipelineConfig) -> str:
    s = cfg.source
    return s.describe() if hasattr(s, "describe") else f"{s.type} {getattr(s, 'path', '')}"


def create_index(prep: Any, client: Any, index: str, meta: dict[str, Any], run_id: str) -> None:
    """The sink creates the index (mapping from the models, chunk fields and all) with the stamp field
    and the _meta in the same request, so an index of a run killed at any point is recognised as
    unfinished; refresh is paused before any document is written."""
    from neural_ingest.transforms.reuse import STAMP_FIELD

    prep.sink.extra_mappings = {
        "properties": {STAMP_FIELD: {"type": "object", "enabled": False}}, "_meta": {aliases.META_KEY: meta},
    }
    prep.sink.prepare(prep.fields, run_id)
    client.indices.put_settings(index=index, body={"index": {"refresh_interval": "-1"}})


def clone_index(client: Any, live: str, index: str, meta: dict[str, Any]) -> None:
    """The new index as a ``_clone`` of the live one (segments are hard-linked: no document is read or
    written). The clone needs the live index write-blocked: the block is set and removed again in a finally
    (a block the index already had is left as it was); readers are never affected, writers to the live
    index wait for a few seconds at most. The clone keeps the block until it carries its own _meta stamp
    (status building, this run), so a clone left half-made by a killed run is still recognised (its _meta
    is a copy of the live one's, same run id: aliases.unfinished); then refresh pauses as for a new index."""
    settings = client.indices.get_settings(index=live, params={"flat_settings": "true"})
    blocked = str(next(iter(settings.values()))["settings"].get("index.blocks.write", "false")).lower() == "true"
    if not blocked:
        client.indices.put_settings(index=live, body={"index": {"blocks": {"write": True}}})
    try:
        client.indices.clone(index=live, target=index, params={"wait_for_active_shards": "1"})
    finally:
        if not blocked:
            client.indices.put_settings(index=live, body={"index": {"blocks": {"write": None}}})
    client.cluster.health(index=index, params={"wait_for_status": "yellow"})
    client.indices.put_mapping(index=index, body={"_meta": {aliases.META_KEY: meta}})
    client.indices.put_settings(index=index, body={"index": {"blocks": {"write": None}, "refresh_interval": "-1"}})


def warm_up(sink_cfg: Any, index: str) -> threading.Thread:
    """Load the clone's k-NN graphs into the nodes' native memory (k-NN's warmup API) on a thread of its own, while
    the night's pipeline runs: the recall check, the validation and the first client queries after the swap would
    otherwise wait for that load (the clone's segment files are new to the k-NN cache, though their graphs are the
    live index's). Best effort: lucene fields need no warmup, and a failure only costs that wait later."""

    def run() -> None:
        from neural_ingest.sinks.opensearch_client import make_client

        t = time.monotonic()
        client = make_client(sink_cfg)
        try:
            client.transport.perform_request("GET", f"/_plugins/_knn/warmup/{index}", params={"request_timeout": 600})
            log.info("k-NN graphs of %s loaded into memory in %.1f s", index, time.monotonic() - t)
        except Exception as e:  # noqa: BLE001 - an optimisation: the first query loads the graphs instead
            log.info("k-NN warmup of %s skipped: %s", index, " ".join(str(e).split())[:200])
        finally:
            client.close()

    thread = threading.Thread(target=run, name=f"knn-warmup-{index}", daemon=True)
    thread.start()
    return thread


def refresh(client: Any, index: str, timeout: float) -> None:
    """Make the new index searchable before it is validated; the graphs are built now, which can outlast a
    request's usual timeout on a big load: a refresh that outlasts ``sink.bulk.refresh_timeout`` is a problem to fix."""
    from opensearchpy import ConnectionTimeout

    try:
        client.indices.refresh(index=index, request_timeout=timeout)
    except ConnectionTimeout as e:
        raise ReindexError(
            f"the refresh of {index} did not finish in {timeout:g} s (sink.bulk.refresh_timeout): raise it for this corpus "
            f"and node, the alias is unchanged ({e.__class__.__name__})"
        ) from e
