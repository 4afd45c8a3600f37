"""The run summary: counts from Beam metrics, throughput, and where the output went."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from apache_beam.metrics.metric import MetricsFilter

from neural_ingest.transforms.counters import NAMESPACE, UNCOUNTED


def counter_totals(result: Any) -> dict[str, int]:
    """Sum each neural_ingest counter over all steps (committed where the runner has it), but those of the
    second read that finds duplicate ids (counters.UNCOUNTED): its records are the first read's."""
    totals: dict[str, int] = {}
    for r in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        if UNCOUNTED in (r.key.step or ""):
            continue
        value = r.committed if r.committed is not None else r.attempted
        totals[r.key.metric.name] = totals.get(r.key.metric.name, 0) + int(value or 0)
    return totals


@dataclass
class RunSummary:
    run_id: str
    name: str
    status: str
    read: int
    encoded: int
    indexed: int
    failed: int
    skipped: int
    seconds: float
    docs_per_second: float
    sink: str
    index: str | None
    dead_letter_path: str
    runner: str
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    encoded_by_field: dict[str, int] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    retries: dict[str, int] = field(default_factory=dict)
    error_budget: str | None = None  # why the run failed its error budget, if it did
    # Long documents (chunking): documents a model truncated (with chunking: with a chunk over its
    # maximum), per encoder field, and the number of chunks made (0 when chunking is off).
    truncated: int = 0
    truncated_by_field: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    reused: int = 0  # `reindex`: documents whose stored vectors were reused (indexed, not encoded)
    deleted: int = 0  # `reindex`: documents of the live index that are gone from the source
    # Rows (documents; chunk documents with separate chunk storage) the sink held before and after the
    # run, where it can tell (`dlq replay`): a replay only adds, so fewer after is a failure.
    sink_rows_before: int | None = None
    sink_rows_after: int | None = None
    # How many records had each configured text field (a field present in none is warned about).
    text_fields: dict[str, int] = field(default_factory=dict)
    # recall@k of a plain client knn query on the built index against exact search (OpenSearch runs):
    # {"k", "queries", "recall_at_k", "engine", "params", ...}; "skipped" / "error" say why there is no figure.
    recall: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)  # what a user should look at although the run went through
    # Provenance: when, which code and which config; how it ended (the CLI's exit code, and the error of a failed run).
    started_at: str | None = None  # ISO 8601, UTC
    ended_at: str | None = None
    version: str | None = None  # neural-ingest's
    config_path: str | None = None
    config_sha256: str | None = None  # of the validated config as canonical JSON, secrets masked: a hash only
    exit_code: int | None = None
    error: str | None = None

    def apply_error_budget(self, max_failed: int | None, max_failed_ratio: float | None) -> None:
        """Mark the run failed when failures exceed the configured budget (the CLI then exits 3)."""
        ratio = self.failed / self.read if self.read else 0.0
        if max_failed is not None and self.failed > max_failed:
            self.error_budget = f"{self.failed} records failed, more than run.max_failed={max_failed}"
        elif max_failed_ratio is not None and ratio > max_failed_ratio:
            self.error_budget = (
                f"{self.failed} of {self.read} records failed ({ratio:.2%}), more than run.max_failed_ratio={max_failed_ratio:g}"
            )
        if self.error_budget:
            self.status = "failed"

    def check_input(self, source: str) -> list[str]:
        """Warn about input that "succeeds" silently: no records at all, a text field no record had."""
        new: list[str] = []
        if self.read == 0:
            new.append(f"the source produced no records ({source}): empty input, nothing was indexed")
        else:
            for f, n in self.text_fields.items():
                if n == 0:
                    new.append(f"text field {f!r} was present in none of the {self.read:,} records: check source.text_fields")
        self.warnings.extend(new)
        return new

    @property
    def sink_shrank(self) -> bool:
        before, after = self.sink_rows_before, self.sink_rows_after
        return before is not None and after is not None and after < before

    @property
    def reconciles(self) -> bool:
        return self.read == self.indexed + self.failed + self.skipped

    @classmethod
    def from_counters(
        cls, totals: dict[str, int], *, fields: list[str], seconds: float, text_fields: list[str] = (), **kw: Any  # type: ignore[assignment]
    ) -> RunSummary:
        failed = {k.removeprefix("failed."): v for k, v in totals.items() if k.startswith("failed.")}
        skipped = {k.removeprefix("skipped."): v for k, v in totals.items() if k.startswith("skipped.")}
        encoded = {f: totals.get(f"encoded.{f}", 0) for f in fields}
        retries = {k.removeprefix("retried."): v for k, v in totals.items() if k.startswith("retried.") and v}
        indexed = totals.get("indexed", 0)
        return cls(
            read=totals.get("read", 0),
            encoded=encoded[fields[-1]] if fields else 0,
            indexed=indexed,
            failed=sum(failed.values()),
            skipped=sum(skipped.values()),
            seconds=round(seconds, 3),
            docs_per_second=round(indexed / seconds, 2) if seconds > 0 else 0.0,
            failed_by_reason=failed,
            skipped_by_reason=skipped,
            encoded_by_field=encoded,
            retries=retries,
            truncated=totals.get("truncated", 0),
            truncated_by_field={f: totals.get(f"truncated.{f}", 0) for f in fields if f"truncated.{f}" in totals},
            chunks=totals.get("chunks", 0),
            reused=totals.get("reused", 0),
            deleted=totals.get("deleted", 0),
            text_fields={f: totals.get(f"text_field.{f}", 0) for f in text_fields},
            **kw,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reconciles"] = self.reconciles
        return d

    def write(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def render(self) -> None:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"neural-ingest run {self.run_id} ({self.status})", show_header=False)
        t.add_column(style="bold")
        t.add_column()
        for k in ("read", "encoded", "indexed", "failed", "skipped"):
            t.add_row(k, f"{getattr(self, k):,}")
        t.add_row("reconciles", "yes (read = indexed + failed + skipped)" if self.reconciles else "NO")
        t.add_row("time", f"{self.seconds:.1f} s, {self.docs_per_second:.1f} docs/s")
        t.add_row("sink", self.sink)
        if self.sink_rows_before is not None or self.sink_rows_after is not None:
            t.add_row("rows in the sink", f"{_count(self.sink_rows_before)} before, {_count(self.sink_rows_after)} after"
                      + (" (FEWER: something removed rows)" if self.sink_shrank else ""))
        if self.failed_by_reason:
            t.add_row("failed by stage.reason", ", ".join(f"{k}={v}" for k, v in sorted(self.failed_by_reason.items())))
        if self.skipped_by_reason:
            t.add_row("skipped by reason", ", ".join(f"{k}={v}" for k, v in sorted(self.skipped_by_reason.items())))
        if self.reused or self.deleted:
            t.add_row("reused / deleted", f"{self.reused:,} vectors reused, {self.deleted:,} documents gone from the source")
        if self.chunks:
            t.add_row("chunks", f"{self.chunks:,} ({self.chunks / max(self.indexed, 1):.1f} per indexed document)")
        if self.truncated:
            by = ", ".join(f"{k}={v}" for k, v in sorted(self.truncated_by_field.items()))
            t.add_row("truncated", f"{self.truncated:,} documents longer than a model's maximum ({by}); see chunking")
        if self.retries:
            t.add_row("retries", ", ".join(f"{k}={v}" for k, v in sorted(self.retries.items())))
        if self.recall:
            t.add_row(f"recall@{self.recall.get('k')}", recall_line(self.recall))
        if self.text_fields:
            t.add_row("text fields", ", ".join(f"{k}={v:,}" for k, v in self.text_fields.items()) + " records had them")
        t.add_row("dead letters", self.dead_letter_path if self.failed or self.skipped else "none")
        if self.error_budget:
            t.add_row("ERROR BUDGET", self.error_budget)
        for w in self.warnings:
            t.add_row("WARNING", w)
        if self.error:
            t.add_row("ERROR", self.error)
        t.add_row("runner", self.runner)
        Console(stderr=True).print(t)


def recall_line(r: dict[str, Any]) -> str:
    """One line: the figure, how it was measured, and the index's search settings."""
    if r.get("skipped"):
        return f"not measured: {r['skipped']}"
    if r.get("error"):
        return f"not measured: {r['error']}"
    shown = {k.replace("index.knn.algo_param.", "index "): v for k, v in (r.get("params") or {}).items()}
    params = ", ".join(f"{k} {v}" for k, v in shown.items() if not isinstance(v, dict))
    line = (f"{r['recall_at_k']:.3f} of the exact top {r['k']} for a plain k={r['k']} query ({r['queries']} held-out "
            f"queries; {r.get('engine')}: {params})")
    if r.get("reused_from"):
        line += f"; measured on {r['reused_from']}, which this index is unchanged from (not a document written or deleted)"
    carried = r.get("carried_from")
    if isinstance(carried, dict):
        line += (f"; the exact answers carried from {carried['index']}'s check: {carried['written_searched']:,} documents "
                 f"written since searched exhaustively, {carried['searched_in_full']} queries searched in full")
    return line


def _count(n: int | None) -> str:
    return "unknown" if n is None else f"{n:,}"
