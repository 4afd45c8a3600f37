"""Blue/green indices behind an alias: timestamped index names, the one-request swap, rollback and
retention.

Indices managed for alias ``docs`` are named ``docs-YYYYMMDD-HHMMSS`` (UTC; ``-N`` appended in the
rare case of two in one second) and carry their history in the mapping's ``_meta.neural_ingest``:
``status`` (building, failed, failed_validation, validated), the model identity, the run id, and
when it was validated and promoted. An index still ``building`` (the run was killed) or ``failed``
(the run raised) was left by a run that did not finish: the next run, which holds the lock, removes it.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

from opensearchpy import exceptions as os_exc

from neural_ingest.sinks.base import SinkError

META_KEY = "neural_ingest"
TIMESTAMP_FORMAT = "%Y%m%d-%H%M%S"
BUILDING, FAILED, FAILED_VALIDATION, VALIDATED = "building", "failed", "failed_validation", "validated"
UNFINISHED = frozenset({BUILDING, FAILED})  # statuses of indices whose run did not get to validation


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _pattern(alias: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(alias)}-(\d{{8}}-\d{{6}})(?:-(\d+))?$")


def sort_key(alias: str, index: str) -> tuple[str, int]:
    m = _pattern(alias).match(index)
    if not m:
        raise ValueError(f"{index!r} is not an index managed for alias {alias!r}")
    return m.group(1), int(m.group(2) or 0)


def is_managed(alias: str, index: str) -> bool:
    return _pattern(alias).match(index) is not None


def new_index_name(alias: str, now: dt.datetime | None = None, taken: set[str] | frozenset[str] = frozenset()) -> str:
    base = f"{alias}-{(now or utc_now()).strftime(TIMESTAMP_FORMAT)}"
    name, n = base, 0
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def managed_indices(client: Any, alias: str) -> dict[str, list[str]]:
    """Indices ``<alias>-<timestamp>``, oldest first, each with the aliases it holds."""
    try:
        got = client.indices.get_alias(index=f"{alias}-*", params={"expand_wildcards": "all"})
    except os_exc.NotFoundError:
        return {}
    names = sorted((n for n in got if is_managed(alias, n)), key=lambda n: sort_key(alias, n))
    return {n: sorted(got[n].get("aliases", {})) for n in names}


def alias_targets(client: Any, alias: str) -> list[str]:
    """The indices ``alias`` points to ([] when there is no such alias)."""
    if not client.indices.exists_alias(name=alias):
        return []
    return sorted(client.indices.get_alias(name=alias))


def concrete_index_named(client: Any, name: str) -> bool:
    """True when ``name`` is a real index (not an alias): the alias cannot be created over it."""
    return bool(client.indices.exists(index=name)) and not client.indices.exists_alias(name=name)


def live_index(client: Any, alias: str) -> str | None:
    targets = alias_targets(client, alias)
    if len(targets) > 1:
        raise SinkError(
            f"alias {alias!r} points to {len(targets)} indices ({', '.join(targets)}): reindex swaps an alias that points "
            "to one index; remove the extra ones with POST _aliases first"
        )
    return targets[0] if targets else None


def get_meta(client: Any, index: str) -> dict[str, Any]:
    try:
        got = client.indices.get_mapping(index=index)
    except os_exc.NotFoundError:
        return {}
    body: dict[str, Any] = got.get(index) or next(iter(got.values()), {})
    return dict(body.get("mappings", {}).get("_meta", {}).get(META_KEY, {}))


def update_meta(client: Any, index: str, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into the index's ``_meta.neural_ingest`` (put_mapping replaces _meta whole)."""
    meta = get_meta(client, index)
    meta.update(changes)
    client.indices.put_mapping(index=index, body={"_meta": {META_KEY: meta}})
    return meta


def swap_actions(alias: str, new: str, old: str | None, old_is_concrete: bool = False) -> list[dict[str, Any]]:
    """The actions of the one _aliases request that moves ``alias`` from ``old`` to ``new``."""
    actions: list[dict[str, Any]] = []
    if old and old_is_concrete:
        actions.append({"remove_index": {"index": old}})  # a real index named like the alias gives way to it
    elif old:
        actions.append({"remove": {"index": old, "alias": alias, "must_exist": True}})
    actions.append({"add": {"index": new, "alias": alias}})
    return actions


def swap(client: Any, alias: str, new: str, old: str | None, old_is_concrete: bool = False) -> list[dict[str, Any]]:
    """Point ``alias`` at ``new`` in one atomic _aliases request; readers see ``old`` or ``new``, never neither.

    ``must_exist`` on the remove makes the request fail (changing nothing) if someone moved the alias
    meanwhile, instead of leaving it on two indices.
    """
    actions = swap_actions(alias, new, old, old_is_concrete)
    try:
        client.indices.update_aliases(body={"actions": actions})
    except os_exc.NotFoundError as e:
        raise SinkError(
            f"the alias swap was refused ({e.error}): alias {alias!r} no longer points to {old}; nothing was changed"
        ) from None
    return actions


def rollback_target(client: Any, alias: str, live: str | None, indices: list[str] | None = None) -> str | None:
    """The newest validated index older than ``live`` that was not itself rolled back from: where a
    rollback goes."""
    names = indices if indices is not None else list(managed_indices(client, alias))
    older = [n for n in names if live is None or (is_managed(alias, live) and sort_key(alias, n) < sort_key(alias, live))]
    for name in sorted(older, key=lambda n: sort_key(alias, n), reverse=True):
        meta = get_meta(client, name)
        if meta.get("status") == VALIDATED and not meta.get("rolled_back_at"):
            return name
    return None


def unfinished(client: Any, alias: str, live: str | None, running: str | None = None,
               indices: dict[str, list[str]] | None = None) -> dict[str, dict[str, Any]]:
    """Indices ``<alias>-<timestamp>`` left by runs that did not finish (status building or failed), with
    their _meta: never the live index, its rollback target, an index holding any alias, or one built by
    ``running`` (the run id holding the lock). Meant for the lock holder: one run at a time per alias, so
    any other run's index still building was abandoned (a run whose lock was taken over can never swap)."""
    indices = managed_indices(client, alias) if indices is None else indices
    target = rollback_target(client, alias, live, list(indices))
    found = {}
    seen: dict[str | None, str] = {}  # run id -> the oldest index stamped with it
    for name in sorted(indices, key=lambda n: sort_key(alias, n)):
        meta = get_meta(client, name)
        run = meta.get("run_id")
        # A clone (reindex's incremental build) carries a copy of its source's _meta until it is stamped:
        # an index with an older index's run id is a clone its run never got to stamp.
        copied = run is not None and run in seen
        seen.setdefault(run, name)
        if name in (live, target) or indices[name]:
            continue
        if (meta.get("status") in UNFINISHED or copied) and (running is None or run != running):
            found[name] = {**meta, "status": "unstamped clone"} if copied else meta
    return dict(sorted(found.items(), key=lambda kv: sort_key(alias, kv[0])))


def describe_unfinished(found: dict[str, dict[str, Any]]) -> str:
    return ", ".join(f"{n} ({m.get('status')}, run {m.get('run_id', '?')}, created {m.get('created_at', '?')})"
                     for n, m in found.items()) or "none"


def remove_unfinished(client: Any, alias: str, live: str | None, running: str | None) -> dict[str, dict[str, Any]]:
    """Delete the indices ``unfinished`` finds; call only while holding the alias' lock."""
    found = unfinished(client, alias, live, running)
    for name in found:
        client.indices.delete(index=name, ignore=[404])
    return found


def retention(client: Any, alias: str, keep_last: int, live: str | None,
              running: str | None = None) -> tuple[list[str], list[str]]:
    """(kept, to delete): the newest ``keep_last`` finished indices, the live one and its rollback target
    are kept; so is any index holding some other alias. Indices of runs that did not finish (``unfinished``,
    other than ``running``'s) are deleted and do not count towards ``keep_last``."""
    indices = managed_indices(client, alias)
    names = list(indices)
    left = unfinished(client, alias, live, running, indices)
    finished = [n for n in names if n not in left]
    keep = set(finished[-keep_last:]) if keep_last > 0 else set()
    if live:
        keep.add(live)
    target = rollback_target(client, alias, live, names)
    if target:
        keep.add(target)
    keep |= {n for n, aliases in indices.items() if aliases}
    return [n for n in names if n in keep], [n for n in names if n not in keep]


def prune(client: Any, alias: str, keep_last: int, live: str | None, running: str | None = None) -> list[str]:
    _, delete = retention(client, alias, keep_last, live, running)
    for name in delete:
        client.indices.delete(index=name, ignore=[404])
    return delete


def rollback(client: Any, alias: str) -> tuple[str, str, list[dict[str, Any]]]:
    """Point ``alias`` back to the previous validated index, in one request. (from, to, actions)."""
    live = live_index(client, alias)
    if live is None:
        raise SinkError(f"alias {alias!r} does not exist: there is nothing to roll back")
    target = rollback_target(client, alias, live)
    if target is None:
        raise SinkError(
            f"alias {alias!r} points to {live} and there is no older validated index {alias}-<timestamp> to go back to"
        )
    actions = swap(client, alias, target, live)
    update_meta(client, live, rolled_back_at=utc_now().isoformat(timespec="seconds"))
    return live, target, actions
