"""The night itself: lock, plan, build, validate, commit the stamps manifest, swap, prune; and rollback."""
from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from neural_ingest.config import (
    PipelineConfig,
    ReindexConfig,
    SourceConfig,
)
from neural_ingest.pipelines.reindex.plan import (
    EXIT_VALIDATION_FAILED,
    ReindexError,
    ReindexPlan,
    chunk_mode,
    clone_index,
    create_index,
    describe_lock,
    index_hash,
    live_reader,
    open_lock,
    opensearch_sink,
    plan_reindex,
    settings,
    warm_up,
)
from neural_ingest.pipelines.reindex.validation import Validation, validate
from neural_ingest.sinks import aliases, recall_probes
from neural_ingest.sinks.base import SinkError
from neural_ingest.summary import RunSummary
from neural_ingest.transforms import manifest

log = logging.getLogger(__name__)


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
    from neural_ingest.transforms.clone_night import CloneChanges
    from neural_ingest.transforms.reuse import ReuseStoredVectors
    from neural_ingest.transforms.stamps_join import CountGone

    rcfg, alias = settings(cfg)
    client = make_client(opensearch_sink(cfg))
    prep0 = prepare(cfg)  # models loaded once: the mapping and the model identity need them
    problems = prep0.sink.check(prep0.fields) if dry_run else []
    if dry_run:
        lock_state, holder = describe_lock(open_lock(client, rcfg, alias))
        plan = plan_reindex(cfg, client, prep0.fields, full=full, replace_index=replace_index, lock_state=lock_state,
                            running=holder, allow_shrink=allow_shrink)
        echo("reindex plan (dry run: nothing is changed)")
        for line in plan.lines():
            echo("  " + line)
        for p in problems:
            echo(f"  problem:     {p}")
        return ReindexResult(plan, "dry_run")

    run_id = new_run_id()
    lock = open_lock(client, rcfg, alias, run_id).acquire(wait=wait)
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
            "alias": alias,
            "status": aliases.BUILDING,
            "run_id": run_id,
            "created_at": aliases.utc_now().isoformat(timespec="seconds"),
            "mode": plan.mode,
            "built_from": plan.live,
            "model_hash": plan.model_hash,
            "model_identity": plan.model_identity,
            "index_hash": index_hash(cfg, prep.fields),
        }
        stored = live_reader(cfg, plan.live) if plan.live and not chunk_mode(cfg) else None
        out = _manifest_out(cfg, client, rcfg, alias, plan.new_index)
        store, probes_key = manifest.manifest_index(rcfg.lock_index), recall_probes.settings_hash(cfg.sink, plan.model_hash)
        recall = recall_probes.RecallCarry(client, store, probes_key)  # measured in full, its probes kept
        reuse: CloneChanges | CountGone | ReuseStoredVectors
        if stored is not None and cfg.source.type != "opensearch":  # file sources: small tuples joined, never documents
            stored = stored.model_copy(update={"page_size": 5000})
            if plan.mode == "incremental":
                assert plan.live is not None  # for mypy: stored reads the live index
                ref = _manifest_ref(cfg, client, rcfg, plan, stored, echo) if out is not None else None
                live_recall = (aliases.get_meta(client, plan.live) or {}).get("recall")
                recall = recall_probes.RecallCarry(client, store, probes_key, plan.live, live_recall, echo)
                t = time.monotonic()
                clone_index(client, plan.live, plan.new_index, meta)
                log.info("cloned %s into %s in %.1f s", plan.live, plan.new_index, time.monotonic() - t)
                warm_up(new_cfg.sink, plan.new_index)  # the clone's graphs load while the pipeline runs
                assert isinstance(new_cfg.source, SourceConfig)  # for mypy: this branch is the file sources'
                reuse = CloneChanges(prep.fields, plan.model_hash, stored, new_cfg.source, opensearch_sink(new_cfg),
                                     progress_every=cfg.run.progress_every_seconds, manifest=ref, manifest_out=out)
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
                                 recall_check=recall)
            log.info(
                "pipeline %.1f s, recall check and the rest of the run %.1f s",
                summary.seconds,
                time.monotonic() - t - summary.seconds,
            )
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
        recall.keep(plan.new_index)
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
    client = make_client(opensearch_sink(cfg))
    try:
        if dry_run:
            live = aliases.live_index(client, alias)
            if live is None:
                raise ReindexError(f"alias {alias!r} does not exist: there is nothing to roll back")
            target = aliases.rollback_target(client, alias, live)
            if target is None:
                raise ReindexError(f"alias {alias!r} points to {live} and there is no older validated index to go back to")
            return RollbackResult(alias, live, target, aliases.swap_actions(alias, target, live), dry_run=True)
        lock = open_lock(client, rcfg, alias).acquire(wait=wait, heartbeat=False)
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


def _manifest_out(cfg: PipelineConfig, client: Any, rcfg: ReindexConfig, alias: str, index: str) -> Any:
    """Where this build writes its manifest: JSONL sources, deduplicated, whole documents (None otherwise)."""
    if cfg.source.type != "jsonl" or not cfg.source.deduplicate or chunk_mode(cfg):
        return None
    mindex = manifest.manifest_index(rcfg.lock_index)
    return manifest.ManifestOut(opensearch_sink(cfg).model_copy(update={"index": index}), mindex, alias, index)


def _manifest_ref(cfg: PipelineConfig, client: Any, rcfg: ReindexConfig, plan: ReindexPlan, live: Any,
                  echo: Callable[[str], None]) -> Any:
    """The live index's manifest when it describes that index exactly now; None (the stamps are read) otherwise."""
    assert plan.live is not None  # for mypy: only an incremental night with a live index reads its manifest
    mindex = manifest.manifest_index(rcfg.lock_index)
    header, why = manifest.usable(client, mindex, plan.live, plan.model_hash, manifest.source_hash(cfg.source))
    if header is None:
        echo(f"stamps:      read from {plan.live} ({why})")
        return None
    echo(f"stamps:      from the manifest of {plan.live} (in {mindex}): unchanged lines are not parsed")
    return manifest.ManifestRef(live, mindex, plan.live, header["uuid"], tuple(header["parts"]))


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
