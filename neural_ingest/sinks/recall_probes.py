"""A reindex night's recall check from the live index's probes: the same queries, their exact answers carried forward.

A night's new index is a ``_clone`` of the live one plus the night's writes and deletes. The full recall check
(sinks/recall.py) searches every document exhaustively for each query: at 1,000,000 documents that brute force
is most of what a 1%-changed night costs after its pipeline. Yet among the documents the night left alone, the
exact top of a query is the one the live index's check already found. So every reindex build keeps its check's
probes (the query vectors; per query the exact top ``depth`` hits and the score above which that list is
complete), and a night whose new index is a clone of the index they describe:

1. drops from each stored list the documents the night deleted or wrote again: a document is untouched when it
   is still there with a sequence number at most its shard's ``max_seq_no`` when the probes were taken;
2. searches exhaustively only the documents written this night (``script_score`` over ``_seq_no`` above it);
3. merges both by score. The result is exact down to the higher of the two lists' cut-off scores; a query left
   with fewer than k known hits is searched exhaustively over the whole index again.

The plain client query is asked as before, so recall@k is what a full check would report for the same queries
(up to ties in score). The probes live in the reindex lock index (``recall/<index>``, read and written by id,
like the stamps manifest), tied to the index's uuid, document count and shards' ``max_seq_no`` (any write to it
makes them stale: the next night measures in full) and to the check's settings and model.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from neural_ingest.sinks.recall import (
    FieldProbes,
    Hit,
    Probes,
    check_index_probes,
    cut_off,
    exact_query,
    field_facts,
    msearch_hits,
    plain_query,
    probe_depth,
    recall_at_k,
    summarise,
)

log = logging.getLogger(__name__)

_IDS_PER_REQUEST = 10_000  # index.max_result_window


def record_id(index: str) -> str:
    return f"recall/{index}"


def settings_hash(sink_cfg: Any, model_hash: str) -> str:
    """What chose the probes: sink.recall (and its query file's content), the fields' model identity."""
    rcfg = sink_cfg.recall
    queries = hashlib.sha256(Path(rcfg.queries_path).read_bytes()).hexdigest() if rcfg.queries_path else ""
    body = json.dumps([rcfg.model_dump(mode="json"), queries, model_hash], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- stored form
def _encode(probes: Probes, fp: dict[str, Any], index: str, settings: str) -> dict[str, Any]:
    fields = {}
    for name, f in probes.fields.items():
        vecs = np.asarray(f.vectors, dtype=np.float64)
        fields[name] = {"space_type": f.space_type, "shape": list(vecs.shape), "bound": f.bound,
                        "vectors": base64.b64encode(vecs.tobytes()).decode("ascii"),
                        "exact": [[[i, s] for i, s in hits] for hits in f.exact]}
    return {"kind": "recall", "index": index, "settings": settings, "k": probes.k, "depth": probes.depth,
            "source": probes.source, **fp, "fields": fields}


def _decode(doc: dict[str, Any]) -> Probes:
    probes = Probes(int(doc["k"]), int(doc["depth"]), str(doc["source"]))
    for name, f in doc["fields"].items():
        vecs = np.frombuffer(base64.b64decode(f["vectors"]), dtype=np.float64).reshape(f["shape"])
        probes.fields[name] = FieldProbes(f["space_type"], vecs.tolist(),
                                          [[(str(i), float(s)) for i, s in hits] for hits in f["exact"]], list(f["bound"]))
    return probes


def load(client: Any, store: str, index: str, settings: str) -> tuple[Probes | None, dict[str, Any], str]:
    """(the probes of ``index`` when they describe it exactly now, their fingerprint, why not otherwise)."""
    from opensearchpy import exceptions as os_exc

    from neural_ingest.transforms.manifest import fingerprint

    try:
        doc = client.get(index=store, id=record_id(index))["_source"]
    except os_exc.NotFoundError:
        return None, {}, f"no recall probes for {index}"
    fp = fingerprint(client, index)
    for key, want in (("uuid", fp["uuid"]), ("count", fp["count"]), ("seq_no", fp["seq_no"]), ("settings", settings)):
        if doc.get(key) != want:
            return None, {}, f"the recall probes of {index} are stale ({key} changed)"
    return _decode(doc), fp, ""


def save(client: Any, store: str, index: str, probes: Probes, settings: str) -> None:
    """Keep ``probes`` for ``index`` as it is now (call once nothing more is written to it)."""
    from neural_ingest.transforms.manifest import fingerprint

    client.index(index=store, id=record_id(index), body=_encode(probes, fingerprint(client, index), index, settings),
                 params={"request_timeout": 120})


def discard(client: Any, store: str, index: str) -> None:
    try:
        client.delete(index=store, id=record_id(index), params={"ignore": 404})
    except Exception as e:  # noqa: BLE001 - best effort: stale probes are never used (their fingerprint no longer matches)
        log.warning("could not remove the recall probes of %s: %s", index, e)


# --------------------------------------------------------------------------- the night's measurement
def _untouched(client: Any, index: str, ids: list[str], seq_no: dict[int, int]) -> set[str]:
    """Those of ``ids`` still in ``index`` with the sequence number they had (at most their shard's ``seq_no``)."""
    out: set[str] = set()
    for shard, top in seq_no.items():
        for i in range(0, len(ids), _IDS_PER_REQUEST):
            chunk = ids[i:i + _IDS_PER_REQUEST]
            body = {"size": len(chunk), "_source": False, "query": {"bool": {"filter": [
                {"ids": {"values": chunk}}, {"range": {"_seq_no": {"lte": top}}}]}}}
            res = client.search(index=index, body=body, preference=f"_shards:{shard}", request_timeout=120)
            out.update(h["_id"] for h in res["hits"]["hits"])
    return out


def _written_top(client: Any, index: str, field: str, vectors: list[list[float]], depth: int, space_type: str,
                 moved: dict[int, int]) -> tuple[list[list[Hit]], list[float | None]]:
    """Per query: the exact top ``depth`` of the documents written since (shard -> its ``max_seq_no`` then), and the
    score above which no written document is missing (None: all are listed)."""
    tops: list[list[Hit]] = [[] for _ in vectors]
    bounds: list[float | None] = [None for _ in vectors]
    for shard, top in moved.items():
        among = {"range": {"_seq_no": {"gt": top}}}
        got = msearch_hits(client, index, [exact_query(field, v, depth, space_type, among) for v in vectors],
                           preference=f"_shards:{shard}")
        for q, hits in enumerate(got):
            tops[q] += hits
            cut = cut_off(hits, depth)
            if cut is not None:
                before = bounds[q]
                bounds[q] = cut if before is None else max(before, cut)
    return tops, bounds


def merge(kept: list[Hit], kept_bound: float | None, written: list[Hit], written_bound: float | None,
          depth: int) -> tuple[list[Hit], float | None]:
    """The exact hits of a query over untouched and written documents, and the score above which the list is complete."""
    bounds = [b for b in (kept_bound, written_bound) if b is not None]
    bound = max(bounds) if bounds else None
    hits = sorted(kept + written, key=lambda h: -h[1])
    if bound is not None:
        hits = [h for h in hits if h[1] >= bound]
    if len(hits) > depth:
        hits = hits[:depth]
        bound = hits[-1][1]
    return hits, bound


def carried(client: Any, index: str, base: Probes, seq_then: list[list[int]], live: str) -> tuple[dict[str, Any], Probes]:
    """recall@k of ``index`` (a clone of ``live`` plus writes and deletes) for ``base``'s queries, and its probes."""
    from neural_ingest.transforms.manifest import fingerprint

    t0 = time.monotonic()
    then = {int(s): int(n) for s, n in seq_then}
    now = {int(s): int(n) for s, n in fingerprint(client, index)["seq_no"]}
    if set(now) != set(then):
        raise ValueError(f"{index} has shards {sorted(now)}, the probes {sorted(then)}")
    moved = {s: then[s] for s in now if now[s] > then[s]}
    written = sum(int(client.count(index=index, body={"query": {"range": {"_seq_no": {"gt": top}}}},
                                   preference=f"_shards:{s}")["count"]) for s, top in moved.items())
    out = Probes(base.k, base.depth, base.source)
    by_field: dict[str, Any] = {}
    again = 0
    for name, f in base.fields.items():
        ids = sorted({i for hits in f.exact for i, _ in hits})
        keep = _untouched(client, index, ids, then) if moved else set(ids)
        tops, bounds = (_written_top(client, index, name, f.vectors, base.depth, f.space_type, moved) if written
                        else ([[] for _ in f.vectors], [None for _ in f.vectors]))
        exact, bound = [], []
        for q, hits in enumerate(f.exact):
            e, b = merge([h for h in hits if h[0] in keep], f.bound[q], tops[q], bounds[q], base.depth)
            exact.append(e)
            bound.append(b)
        short = [q for q, (e, b) in enumerate(zip(exact, bound)) if b is not None and len(e) < base.k]
        if short:  # too few known hits left: these queries are searched exhaustively again
            again += len(short)
            full = msearch_hits(client, index, [exact_query(name, f.vectors[q], base.depth, f.space_type) for q in short])
            for q, hits in zip(short, full):
                exact[q], bound[q] = hits, cut_off(hits, base.depth)
        approx = [[i for i, _ in hits] for hits in msearch_hits(client, index, [plain_query(name, v, base.k) for v in f.vectors])]
        out.fields[name] = FieldProbes(f.space_type, f.vectors, exact, bound)
        facts = field_facts(client, index, name)
        r = recall_at_k(approx, [[i for i, _ in e] for e in exact], base.k)
        by_field[name] = {"recall_at_k": round(r, 4), "engine": facts["engine"], "params": facts["params"]}
    queries = len(next(iter(base.fields.values())).vectors)
    summary = summarise({"k": base.k, "queries": 0, "recall_at_k": None}, queries, base.source, by_field, time.monotonic() - t0)
    summary["carried_from"] = {"index": live, "written_searched": written, "searched_in_full": again}
    return summary, out


class RecallCarry:
    """run_ingest's recall check for a reindex build, and what it measured, kept for the next night.

    ``live`` (a night whose new index is a clone of it): its probes, when they describe it exactly now, make the
    measurement incremental (module docstring); ``live_recall``: the live index's recorded recall, reported
    again when the night wrote and deleted nothing. Anything else (a full build, no usable probes, a failure of
    the incremental path) measures in full, as ``neural-ingest run`` does."""

    def __init__(self, client: Any, store: str, settings: str, live: str | None = None, live_recall: Any = None,
                 echo: Any = log.info) -> None:
        self.client, self.store, self.settings, self.live, self.live_recall = client, store, settings, live, live_recall
        self.base: Probes | None = None
        self.base_fp: dict[str, Any] = {}
        self.probes: Probes | None = None
        if live is not None:
            try:
                self.base, self.base_fp, why = load(client, store, live, settings)
            except Exception as e:  # noqa: BLE001 - measured in full instead
                why = f"{type(e).__name__}: {str(e)[:200]}"
            if self.base is None:
                echo(f"recall:      measured in full ({why})")
            else:
                echo(f"recall:      from the probes of {live}: only what this night writes is searched exhaustively")

    def __call__(self, sink: Any, encoders: list[tuple[str, Any]], fields: dict[str, Any]) -> dict[str, Any] | None:
        index = sink.index_name
        if self.live is not None:
            reused = self._unchanged(index)
            if reused is not None:
                self.probes = self.base  # not a document written or deleted: the same segments, the same answers
                return reused
        if self.base is not None:
            try:
                carried_recall, self.probes = carried(self.client, index, self.base, self.base_fp["seq_no"], str(self.live))
                return carried_recall
            except Exception as e:  # noqa: BLE001 - the full check stands in
                log.warning("recall from the probes of %s failed (%s): measured in full", self.live, e)
        recall, self.probes = check_index_probes(sink, encoders, fields, probe_depth(sink.cfg.recall.k))
        return recall

    def _unchanged(self, index: str) -> dict[str, Any] | None:
        """The live index's recorded recall, for a clone the run left exactly as it was (the same document count and
        every shard's max_seq_no: not a document written or deleted, so the same segments); None: measured."""
        from neural_ingest.transforms.manifest import fingerprint

        if not isinstance(self.live_recall, dict) or self.live_recall.get("recall_at_k") is None:
            return None
        try:
            before, after = fingerprint(self.client, str(self.live)), fingerprint(self.client, index)
        except Exception as e:  # noqa: BLE001 - measured instead
            log.warning("recall: %s", e)
            return None
        if (before["count"], before["seq_no"]) != (after["count"], after["seq_no"]):
            return None
        return {**self.live_recall, "reused_from": self.live}

    def keep(self, index: str) -> None:
        """Store this build's probes for ``index`` (validated: nothing more is written to it) and remove the live
        index's; never fails the night (the next one then measures in full)."""
        if self.probes is None:
            return
        try:
            save(self.client, self.store, index, self.probes, self.settings)
            if self.live:
                discard(self.client, self.store, self.live)
        except Exception as e:  # noqa: BLE001 - an optimisation for the next night, not part of this one
            log.warning("recall probes of %s not kept (%s): the next night measures recall in full", index, e)
