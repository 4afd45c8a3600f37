"""Nightly reindexing: blue/green behind an alias, incremental re-embedding, one run at a time.

``reindex``:
1. take the lock for the alias (an OpenSearch document with an expiry; ``--wait`` to queue);
2. remove indices left by runs that did not finish (status building or failed: killed or crashed),
   never the live one or its rollback target; create ``<alias>-<UTC timestamp>`` with the mapping of
   the current models, a ``neural_ingest`` stamp field and ``_meta.neural_ingest`` (status building,
   run id, model identity), all in the create request;
3. run the ingest pipeline into it; with ``incremental`` (and an unchanged model identity) and a file
   source the new index is a ``_clone`` of the live one and only the changes are written into it
   (transforms/reuse.py CloneChanges: ids classified by a join of small (id, hashes) tuples; unchanged
   documents are not written, metadata-only changes reuse their stored vectors, new and changed ones
   are encoded, vanished ones are deleted from the clone; a JSONL night takes the live stamps from the live
   index's stamps manifest when it still describes that index exactly, transforms/manifest.py, and parses
   only the lines whose bytes changed); with an index source the live index is read
   alongside the source and joined by id (copy-forward into a new empty index);
4. validate: document count against the source, the shrink guard against the live index
   (max_deleted_ratio, min_documents; --allow-shrink for a planned drop), dead letters within budget,
   self-retrieval of a sample; on failure the alias stays, the new index is kept (status
   failed_validation), exit 4;
5. commit this build's stamps manifest (no dead letter, rows = documents) for the next night;
   swap the alias in one ``_aliases`` request; keep the last N indices (always the live one and its
   rollback target); release the lock.

``rollback`` points the alias back at the newest older validated index, in one request.
"""
from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from neural_ingest.config import (
    OpenSearchSourceConfig,
    PipelineConfig,
    ReindexConfig,
    ReindexValidationConfig,
)
from neural_ingest.fingerprint import identity_hash, model_identity
from neural_ingest.sinks import aliases
from neural_ingest.sinks.base import SinkError
from neural_ingest.sinks.lock import IndexLock, LockHeld, LockLost
from neural_ingest.summary import RunSummary
from neural_ingest.transforms import manifest

log = logging.getLogger(__name__)

EXIT_VALIDATION_FAILED = 4
EXIT_LOCKED = 5


class ReindexError(SinkError):
    """A reindex problem the user fixes (config, alias taken by an index, nothing to roll back)."""


# --------------------------------------------------------------------------- results
@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Validation:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


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
        budget = f"at most {v['max_failed']} dead letters" if v.get("max_failed") is not None else "dead letters within the run's error budget"
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


@dataclass
class ReindexResult:
    plan: ReindexPlan
    status: str  # dry_run | swapped | validation_failed
    summary: RunSummary | None = None
    validation: Validation | None = None
    deleted_indices: list[str] = field(default_factory=list)
    removed_unfinished: list[str] = field(default_factory=list)  # indices of runs that did not finish, removed first

    @property
    def exit_code(self) -> int:
        return EXIT_VALIDATION_FAILED if self.status == "validation_failed" else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "alias": self.plan.alias,
            "new_index": self.plan.new_index,
            "previous_index": self.plan.live,
            "mode": self.plan.mode,
            "reason": self.plan.reason,
            "model_hash": self.plan.model_hash,
            "validation": self.validation.to_dict() if self.validation else None,
            "deleted_indices": self.deleted_indices,
            "removed_unfinished": self.removed_unfinished,
            "live_count": self.plan.live_count,
            "allow_shrink": self.plan.allow_shrink,
        }


@dataclass
class RollbackResult:
    alias: str
    from_index: str
    to_index: str
    actions: list[dict[str, Any]]
    dry_run: bool = False


# --------------------------------------------------------------------------- helpers
def settings(cfg: PipelineConfig) -> tuple[ReindexConfig, str]:
    if cfg.sink.type != "opensearch":
        raise ReindexError("reindex builds OpenSearch indices behind an alias: set sink.type: opensearch (sink.index names the alias)")
    rcfg = cfg.reindex or ReindexConfig()
    return rcfg, rcfg.alias or cfg.sink.index


def _chunk_mode(cfg: PipelineConfig) -> str | None:
    ch = getattr(cfg, "chunking", None)
    return getattr(ch, "storage", "nested") if ch is not None and getattr(ch, "mode", "truncate") == "chunk" else None


def live_reader(cfg: PipelineConfig, index: str) -> OpenSearchSourceConfig:
    """A source config that reads ``index`` with the sink's connection settings."""
    s = cfg.sink
    return OpenSearchSourceConfig(
        type="opensearch", hosts=s.hosts, index=index, username=s.username, password=s.password,
        aws_sigv4=s.aws_sigv4, verify_certs=s.verify_certs, ca_certs=s.ca_certs, timeout=s.bulk.timeout,
        text_fields=[s.text_field], deduplicate=False, page_size=200,
    )


def _lock(client: Any, rcfg: ReindexConfig, alias: str, run_id: str | None = None) -> IndexLock:
    return IndexLock(client, alias, rcfg.lock_ttl, index=rcfg.lock_index, run_id=run_id)


def _lock_state(lock: IndexLock) -> tuple[str, str | None]:
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


def plan_reindex(cfg: PipelineConfig, client: Any, fields: dict, *, full: bool = False, replace_index: bool = False,
                 now=None, lock_state: str = "", running: str | None = None, allow_shrink: bool = False) -> ReindexPlan:
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

    chunked = _chunk_mode(cfg)
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
            mode, reason = "full", (
                f"the index settings or mapping in the config changed since {live} was built (index hash "
                f"{meta.get('index_hash')}, now {index_hash(cfg, fields)}): full rebuild into a new index, every document is encoded"
                if meta.get("index_hash") else
                f"{live} does not record the settings and mapping it was created with (built by an older neural-ingest): "
                "rebuilt in full once, so that the next nights can clone it"
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


def index_hash(cfg: PipelineConfig, fields: dict) -> str:
    """Identity of the index the config creates (settings and mappings, sinks/mapping.index_body): an
    incremental night clones the live index only while it is the same, since a clone keeps the old ones."""
    from neural_ingest.sinks.mapping import index_body

    return identity_hash(index_body(cfg.sink, fields))  # type: ignore[arg-type]


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


# --------------------------------------------------------------------------- validation
def validate(cfg: PipelineConfig, client: Any, prep: Any, index: str, summary: RunSummary, vcfg: ReindexValidationConfig,
             seed: int = 0, *, live: str | None = None, allow_shrink: bool = False) -> Validation:
    """The gate before the swap; ``live``: the index readers see now (the shrink guard compares with it)."""
    v = Validation()
    refresh(client, index, cfg.sink.bulk.refresh_timeout)  # type: ignore[union-attr]
    chunked = _chunk_mode(cfg)

    expected = summary.read - summary.skipped
    actual = int(client.count(index=index)["count"])
    if chunked == "separate":
        v.checks.append(Check("count", summary.indexed > 0 and expected > 0,
                              f"{actual} chunk documents for {expected} source documents (chunks stored separately: "
                              "the count is not compared)"))
    elif expected <= 0:
        v.checks.append(Check("count", False, "the source produced no documents: an empty index is never swapped in"))
    else:
        allowed = math.floor(vcfg.count_tolerance * expected)
        diff = abs(actual - expected)
        v.checks.append(Check("count", diff <= allowed,
                              f"{actual} documents in {index}, {expected} in the source (read {summary.read} - skipped "
                              f"{summary.skipped}); difference {diff}, allowed {allowed} (count_tolerance {vcfg.count_tolerance:g})"))
    v.checks.append(shrink_check(index, actual, live, _count(client, live) if live else None, vcfg, allow_shrink,
                                 "chunk documents" if chunked == "separate" else "documents"))

    if vcfg.max_failed is not None:
        v.checks.append(Check("dead_letters", summary.failed <= vcfg.max_failed,
                              f"{summary.failed} dead letters, validation.max_failed={vcfg.max_failed}"))
    else:
        v.checks.append(Check("dead_letters", summary.error_budget is None,
                              summary.error_budget or f"{summary.failed} dead letters, within the run's error budget"))

    if vcfg.sample_queries <= 0:
        v.checks.append(Check("self_retrieval", True, "off (validation.sample_queries: 0)"))
    elif chunked:
        v.checks.append(Check("self_retrieval", True, "skipped: documents are chunked (vectors are per chunk)"))
    else:
        v.checks.append(self_retrieval(cfg, client, prep, index, vcfg, seed))
    v.checks.append(recall_check(summary.recall, vcfg.min_recall))
    return v


def recall_check(recall: dict[str, Any] | None, min_recall: float | None) -> Check:
    """The run's recall check (sinks/recall.py) against reindex.validation.min_recall."""
    from neural_ingest.summary import recall_line

    if min_recall is None:
        return Check("recall", True, "off (validation.min_recall: null)")
    if not recall or recall.get("skipped"):
        why = recall_line(recall) if recall else "not measured: sink.recall.sample_queries is 0 or no dense field"
        return Check("recall", True, f"{why}; min_recall {min_recall:g} not applied")
    if recall.get("error") or recall.get("recall_at_k") is None:
        return Check("recall", False, f"{recall_line(recall)}: the check must run for min_recall {min_recall:g} "
                     "(or set reindex.validation.min_recall: null)")
    ok = recall["recall_at_k"] >= min_recall
    return Check("recall", ok, f"{recall_line(recall)}; minimum {min_recall:g} (reindex.validation.min_recall)"
                 + ("" if ok else ": raise sink.knn.ef_search (or m / ef_construction), or drop compression"))


def shrink_check(index: str, actual: int, live: str | None, live_count: int | None, vcfg: ReindexValidationConfig,
                 allow_shrink: bool = False, unit: str = "documents") -> Check:
    """The new index against the live one: a truncated export must not replace what readers have.
    The source count cannot tell: it is the truncated export itself."""
    figures = f"new index {index}: {actual} {unit}"
    problems = []
    if actual < vcfg.min_documents:
        problems.append(f"fewer than reindex.validation.min_documents ({vcfg.min_documents})")
    if live is not None and live_count:
        vanished = max(0, live_count - actual)
        allowed = math.floor(vcfg.max_deleted_ratio * live_count)
        figures = (f"live index {live}: {live_count} {unit}, {figures}; {vanished} ({vanished / live_count:.1%}) would vanish, "
                   f"allowed {allowed} (max_deleted_ratio {vcfg.max_deleted_ratio:g})")
        if vanished > allowed:
            problems.append("more than reindex.validation.max_deleted_ratio allows")
    elif live is None:
        figures += " (no live index: max_deleted_ratio does not apply)"
    if not problems:
        return Check("shrink", True, f"{figures}; min_documents {vcfg.min_documents}")
    if allow_shrink:
        return Check("shrink", True, f"{figures}: {'; '.join(problems)}, allowed by --allow-shrink")
    return Check("shrink", False, f"{figures}: {'; '.join(problems)}; if the drop is planned, run again with --allow-shrink")


def self_retrieval(cfg: PipelineConfig, client: Any, prep: Any, index: str, vcfg: ReindexValidationConfig, seed: int) -> Check:
    """Each sampled document, searched with its own text encoded again (or its stored vector), must
    come back among the top k on every encoder field."""
    from neural_ingest.sinks.opensearch import OpenSearchSink

    text_field = cfg.sink.text_field
    wanted = [text_field] + (list(prep.fields) if vcfg.query_vectors == "stored" else [])
    body = {
        "size": vcfg.sample_queries,
        "query": {"function_score": {"query": {"match_all": {}}, "random_score": {"seed": seed, "field": "_seq_no"}}},
        "_source": wanted,
    }
    hits = client.search(index=index, body=body)["hits"]["hits"]
    if not hits:
        return Check("self_retrieval", False, f"no document to sample in {index}")
    sink = OpenSearchSink(cfg.sink.model_copy(update={"index": index}))
    rates: dict[str, float] = {}
    misses: list[str] = []
    try:
        for fname, encoder in prep.encoders:
            info = prep.fields[fname]
            if vcfg.query_vectors == "encode":
                vecs = encoder.encode(encoder.acquire(), [str(h["_source"].get(text_field, "")) for h in hits])
            else:
                vecs = [h["_source"].get(fname) for h in hits]
            found = 0
            for h, vec in zip(hits, vecs):
                if info.kind == "sparse":
                    from neural_ingest.encoders.sparse_weights import drop_absent

                    got = sink.search_sparse(fname, info, drop_absent(dict(vec)), vcfg.top_k)
                else:
                    got = sink.search(fname, info, vec, vcfg.top_k)
                if h["_id"] in {g.id for g in got}:
                    found += 1
                else:
                    misses.append(f"{fname}:{h['_id']}")
            rates[fname] = found / len(hits)
    except Exception as e:  # noqa: BLE001 - a failing query is a failed check, reported as such
        return Check("self_retrieval", False, f"self-retrieval queries failed: {type(e).__name__}: {str(e)[:300]}")
    ok = all(r >= vcfg.min_self_retrieval for r in rates.values())
    detail = ", ".join(f"{f}: {r:.0%}" for f, r in rates.items()) + (
        f" of {len(hits)} sampled documents found themselves in the top {vcfg.top_k} (minimum {vcfg.min_self_retrieval:.0%})"
    )
    if misses:
        detail += f"; missed: {', '.join(misses[:10])}{' ...' if len(misses) > 10 else ''}"
    return Check("self_retrieval", ok, detail)


# --------------------------------------------------------------------------- the commands
def reindex(
    cfg: PipelineConfig,
    beam_args: list[str] | None = None,
    summary_path: str | None = None,
    *,
    dry_run: bool = False,
    wait: float = 0.0,
    full: bool = False,
    replace_index: bool = False,
    allow_shrink: bool = False,
    echo: Callable[[str], None] = log.info,
    config_path: str | None = None,
) -> ReindexResult:
    """The whole nightly build (module docstring). ``summary_path`` receives the run's summary with a
    ``reindex`` section; a build that crashes still writes it (status failed, the error)."""
    from neural_ingest.pipelines.ingest import new_run_id, prepare, run_ingest
    from neural_ingest.sinks.opensearch_client import make_client
    from neural_ingest.transforms.reuse import (
        CloneChanges,
        CountGone,
        ReuseStoredVectors,
    )

    rcfg, alias = settings(cfg)
    client = make_client(cfg.sink)
    prep0 = prepare(cfg)  # models loaded once: the mapping and the model identity need them
    problems = prep0.sink.check(prep0.fields) if dry_run else []
    if dry_run:
        lock_state, holder = _lock_state(_lock(client, rcfg, alias))
        plan = plan_reindex(cfg, client, prep0.fields, full=full, replace_index=replace_index, lock_state=lock_state,
                            running=holder, allow_shrink=allow_shrink)
        echo("reindex plan (dry run: nothing is changed)")
        for line in plan.lines():
            echo("  " + line)
        for p in problems:
            echo(f"  problem:     {p}")
        return ReindexResult(plan, "dry_run")

    run_id = new_run_id()
    lock = _lock(client, rcfg, alias, run_id).acquire(wait=wait)
    try:
        plan = plan_reindex(cfg, client, prep0.fields, full=full, replace_index=replace_index,
                            lock_state=f"held by this run ({lock.owner}, run {lock.run_id})", running=run_id,
                            allow_shrink=allow_shrink)
        for line in plan.lines():
            echo(line)
        # We hold the lock, so no other run is building: these were left by runs that were killed or crashed.
        for name in plan.unfinished:
            client.indices.delete(index=name, ignore=[404])
            manifest.discard(client, manifest.manifest_index(rcfg.lock_index), name)
        if plan.unfinished:
            echo(f"removed indices left by runs that did not finish: {aliases.describe_unfinished(plan.unfinished)}")
        removed = list(plan.unfinished)
        new_cfg = cfg.model_copy(update={"sink": cfg.sink.model_copy(update={"index": plan.new_index})})
        prep = prepare(new_cfg)
        meta = {
            "alias": alias, "status": aliases.BUILDING, "run_id": run_id, "created_at": aliases.utc_now().isoformat(timespec="seconds"),
            "mode": plan.mode, "built_from": plan.live, "model_hash": plan.model_hash, "model_identity": plan.model_identity,
            "index_hash": index_hash(cfg, prep.fields),
        }
        stored = live_reader(cfg, plan.live) if plan.live and not _chunk_mode(cfg) else None
        out, known_recall = _manifest_out(cfg, client, rcfg, alias, plan.new_index), None
        if stored is not None and cfg.source.type != "opensearch":  # file sources: small tuples joined, never documents
            stored = stored.model_copy(update={"page_size": 5000})
            if plan.mode == "incremental":
                ref = _manifest_ref(cfg, client, rcfg, plan, stored, echo) if out is not None else None
                live_recall = (aliases.get_meta(client, plan.live) or {}).get("recall")
                t = time.monotonic()
                clone_index(client, plan.live, plan.new_index, meta)
                log.info("cloned %s into %s in %.1f s", plan.live, plan.new_index, time.monotonic() - t)
                reuse = CloneChanges(prep.fields, plan.model_hash, stored, new_cfg.source, new_cfg.sink,
                                     progress_every=cfg.run.progress_every_seconds, manifest=ref, manifest_out=out)
                known_recall = _unchanged_recall(client, plan.live, plan.new_index, live_recall)
            else:
                create_index(prep, client, plan.new_index, meta, run_id)
                reuse = CountGone(plan.model_hash, stored, out)
        else:
            create_index(prep, client, plan.new_index, meta, run_id)
            reuse = ReuseStoredVectors(prep.fields, plan.model_hash, stored, reuse=plan.mode == "incremental",
                                       progress_every=cfg.run.progress_every_seconds, manifest_out=out)
        try:
            t = time.monotonic()
            summary = run_ingest(new_cfg, beam_args, summary_path, before_encode=reuse, config_path=config_path,
                                 known_recall=known_recall)
            log.info("pipeline %.1f s, recall check and the rest of the run %.1f s", summary.seconds, time.monotonic() - t - summary.seconds)
        except BaseException as e:
            error = f"{type(e).__name__}: {str(e)[:500]}"
            _safe(lambda: aliases.update_meta(client, plan.new_index, status=aliases.FAILED, error=error))
            _safe(lambda: client.indices.put_settings(index=plan.new_index, body={"index": {"refresh_interval": None}}))
            raise
        client.indices.put_settings(index=plan.new_index, body={"index": {"refresh_interval": None}})
        t = time.monotonic()
        validation = validate(cfg, client, prep, plan.new_index, summary, rcfg.validation,
                              seed=zlib.crc32(run_id.encode()) % 10_000, live=plan.live, allow_shrink=allow_shrink)
        log.info("validated %s in %.1f s (refresh, counts, self-retrieval)", plan.new_index, time.monotonic() - t)
        stamp = aliases.utc_now().isoformat(timespec="seconds")
        if not validation.ok:
            if out is not None:
                manifest.discard(client, out.manifest_index, plan.new_index)
            aliases.update_meta(client, plan.new_index, status=aliases.FAILED_VALIDATION, validation=validation.to_dict())
            summary.status = "failed"
            result = ReindexResult(plan, "validation_failed", summary, validation, removed_unfinished=removed)
            _write(summary, result, summary_path)
            return result
        aliases.update_meta(client, plan.new_index, status=aliases.VALIDATED, validated_at=stamp, validation=validation.to_dict(),
                            recall=summary.recall)
        if out is not None:
            _commit_manifest(client, out, cfg, plan, summary, echo)
        lock.check()  # still ours: nobody took over an expired lock meanwhile
        aliases.swap(client, alias, plan.new_index, plan.live, plan.live_is_index)
        aliases.update_meta(client, plan.new_index, promoted_at=aliases.utc_now().isoformat(timespec="seconds"))
        echo(f"alias {alias} -> {plan.new_index} (was {plan.live or 'none'})")
        deleted = aliases.prune(client, alias, rcfg.keep_last, plan.new_index, running=run_id)
        if deleted:
            echo(f"deleted old indices: {', '.join(deleted)}")
        result = ReindexResult(plan, "swapped", summary, validation, deleted, removed)
        _write(summary, result, summary_path)
        return result
    finally:
        lock.release()
        client.close()


def rollback(cfg: PipelineConfig, *, dry_run: bool = False, wait: float = 0.0) -> RollbackResult:
    from neural_ingest.sinks.opensearch_client import make_client

    rcfg, alias = settings(cfg)
    client = make_client(cfg.sink)
    try:
        if dry_run:
            live = aliases.live_index(client, alias)
            if live is None:
                raise ReindexError(f"alias {alias!r} does not exist: there is nothing to roll back")
            target = aliases.rollback_target(client, alias, live)
            if target is None:
                raise ReindexError(f"alias {alias!r} points to {live} and there is no older validated index to go back to")
            return RollbackResult(alias, live, target, aliases.swap_actions(alias, target, live), dry_run=True)
        lock = _lock(client, rcfg, alias).acquire(wait=wait, heartbeat=False)
        try:
            try:
                live, target, actions = aliases.rollback(client, alias)
            except SinkError as e:
                raise ReindexError(str(e)) from None
            return RollbackResult(alias, live, target, actions)
        finally:
            lock.release()
    finally:
        client.close()


# --------------------------------------------------------------------------- the stamps manifest (transforms/manifest.py)
def _manifest_out(cfg: PipelineConfig, client: Any, rcfg: ReindexConfig, alias: str, index: str) -> Any:
    """Where this build writes its manifest: JSONL sources, deduplicated, whole documents (None otherwise)."""
    if cfg.source.type != "jsonl" or not cfg.source.deduplicate or _chunk_mode(cfg):
        return None
    mindex = manifest.manifest_index(rcfg.lock_index)
    return manifest.ManifestOut(cfg.sink.model_copy(update={"index": index}), mindex, alias, index)


def _manifest_ref(cfg: PipelineConfig, client: Any, rcfg: ReindexConfig, plan: ReindexPlan, live: Any,
                  echo: Callable[[str], None]) -> Any:
    """The live index's manifest when it describes that index exactly now; None (the stamps are read) otherwise."""
    mindex = manifest.manifest_index(rcfg.lock_index)
    header, why = manifest.usable(client, mindex, plan.live, plan.model_hash, manifest.source_hash(cfg.source))
    if header is None:
        echo(f"stamps:      read from {plan.live} ({why})")
        return None
    echo(f"stamps:      from the manifest of {plan.live} (in {mindex}): unchanged lines are not parsed")
    return manifest.ManifestRef(live, mindex, plan.live, header["uuid"], tuple(header["parts"]))


def _unchanged_recall(client: Any, live: str, index: str, recall: Any) -> Callable[[], Any]:
    """The live index's recorded recall, for a clone the run left exactly as it was (the same documents count and
    every shard's max_seq_no: not a document written or deleted, so the same segments); None: measured."""

    def known() -> Any:
        if not isinstance(recall, dict) or recall.get("recall_at_k") is None:
            return None
        try:
            before, after = manifest.fingerprint(client, live), manifest.fingerprint(client, index)
        except Exception as e:  # noqa: BLE001 - measured instead
            log.warning("recall: %s", e)
            return None
        if (before["count"], before["seq_no"]) != (after["count"], after["seq_no"]):
            return None
        return {**recall, "reused_from": live}

    return known


def _commit_manifest(client: Any, out: Any, cfg: PipelineConfig, plan: ReindexPlan, summary: RunSummary,
                     echo: Callable[[str], None]) -> None:
    """Commit the manifest this build wrote, only when every document made it (no dead letter): the next night then
    need not read the stamps. Any problem leaves it uncommitted (that night reads them), never fails the run."""
    why = f"{summary.failed} dead letters" if summary.failed else ""
    try:
        why = why or manifest.commit(client, out.manifest_index, out.alias, plan.new_index, plan.model_hash,
                                     manifest.source_hash(cfg.source), plan.live)
    except Exception as e:  # noqa: BLE001 - an optimisation for the next night, not part of this one
        why = f"{type(e).__name__}: {str(e)[:300]}"
    if why:
        manifest.discard(client, out.manifest_index, plan.new_index)
        echo(f"manifest:    not committed ({why}): the next night reads the stamps from the index")
    else:
        echo(f"manifest:    committed for {plan.new_index} ({out.manifest_index})")


def _safe(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - best effort while another error is on its way up
        log.warning("%s", e)


def _write(summary: RunSummary, result: ReindexResult, path: str | None) -> None:
    if not path:
        return
    import json
    from pathlib import Path

    summary.exit_code = result.exit_code
    data = summary.to_dict()
    data["reindex"] = result.to_dict()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")


__all__ = [
    "EXIT_LOCKED", "EXIT_VALIDATION_FAILED", "LockHeld", "LockLost", "ReindexError", "ReindexPlan", "ReindexResult",
    "RollbackResult", "plan_reindex", "reindex", "rollback", "shrink_check", "validate",
]
