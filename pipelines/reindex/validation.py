"""Whether a new index may take the alias: counts, the shrink guard, dead letters, recall and self-retrieval."""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from neural_ingest.config import (
    PipelineConfig,
    ReindexValidationConfig,
)
from neural_ingest.pipelines.reindex.plan import (
    _count,
    chunk_mode,
    opensearch_sink,
    refresh,
)
from neural_ingest.summary import RunSummary

log = logging.getLogger(__name__)


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


def validate(cfg: PipelineConfig, client: Any, prep: Any, index: str, summary: RunSummary, vcfg: ReindexValidationConfig,
             seed: int = 0, *, live: str | None = None, allow_shrink: bool = False) -> Validation:
    """The gate before the swap; ``live``: the index readers see now (the shrink guard compares with it)."""
    v = Validation()
    refresh(client, index, opensearch_sink(cfg).bulk.refresh_timeout)
    chunked = chunk_mode(cfg)

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
        v.checks.append(
            Check(
                "count",
                diff <= allowed,
                f"{actual} documents in {index}, {expected} in the source (read {summary.read} - skipped "
                f"{summary.skipped}); difference {diff}, allowed {allowed} (count_tolerance {vcfg.count_tolerance:g})",
            )
        )
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

    sink_cfg = opensearch_sink(cfg)
    text_field = sink_cfg.text_field
    wanted = [text_field] + (list(prep.fields) if vcfg.query_vectors == "stored" else [])
    body = {
        "size": vcfg.sample_queries,
        "query": {"function_score": {"query": {"match_all": {}}, "random_score": {"seed": seed, "field": "_seq_no"}}},
        "_source": wanted,
    }
    hits = client.search(index=index, body=body)["hits"]["hits"]
    if not hits:
        return Check("self_retrieval", False, f"no document to sample in {index}")
    sink = OpenSearchSink(sink_cfg.model_copy(update={"index": index}))
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
