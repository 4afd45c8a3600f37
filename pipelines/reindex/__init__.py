"""Nightly reindexing: blue/green behind an alias, incremental re-embedding, one run at a time.

``reindex``:
1. take the lock for the alias (an OpenSearch document with an expiry; ``--wait`` to queue);
2. remove indices left by runs that did not finish (status building or failed: killed or crashed),
   never the live one or its rollback target; create ``<alias>-<UTC timestamp>`` with the mapping of
   the current models, a ``neural_ingest`` stamp field and ``_meta.neural_ingest`` (status building,
   run id, model identity), all in the create request;
3. run the ingest pipeline into it; with ``incremental`` (and an unchanged model identity) and a file
   source the new index is a ``_clone`` of the live one and only the changes are written into it
   (transforms/clone_night.py CloneChanges: ids classified by a join of small (id, hashes) tuples; unchanged
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

The package: `plan` (what a night will do, and the index operations), `validation` (whether the new index may
take the alias), `run` (`reindex` and `rollback`).
"""
from neural_ingest.pipelines.reindex.plan import (
    EXIT_LOCKED,
    EXIT_VALIDATION_FAILED,
    ReindexError,
    ReindexPlan,
    create_index,
    index_hash,
    plan_reindex,
    refresh,
    settings,
)
from neural_ingest.pipelines.reindex.run import ReindexResult, RollbackResult, reindex, rollback
from neural_ingest.pipelines.reindex.validation import Check, Validation, recall_check, self_retrieval, shrink_check, validate
from neural_ingest.sinks.lock import LockHeld, LockLost

__all__ = [
    "EXIT_LOCKED", "EXIT_VALIDATION_FAILED", "Check", "LockHeld", "LockLost", "ReindexError", "ReindexPlan", "ReindexResult",
    "RollbackResult", "Validation", "create_index", "index_hash", "plan_reindex", "recall_check", "refresh", "reindex",
    "rollback", "self_retrieval", "settings", "shrink_check", "validate",
]
