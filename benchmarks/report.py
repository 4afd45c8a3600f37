"""The throughput run's report: ratios against their targets, the console table, the chart.

Reads only the runs recorded (harness.Bench.runs) and the result document (benchmarks/run.py); measures nothing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

TARGETS = {
    "pipeline_parquet/raw_encode": 0.95,
    "pipeline_opensearch/raw_encode": 0.90,
    "pipeline_parquet/mltransform": 1.10,
    "indexing_stage/raw_bulk": 0.90,
    "fast_backend_int8/raw_encode": 1.80,
    "fast_backend_int8_min_cosine": 0.99,
}
# (ablation, what it is compared with), in the order the ratios list them; a run without a batch size
# (the indexing stage's) is compared "once".
ABLATION_RATIOS = (
    ("ablation_fixed_batches", "pipeline_parquet"),
    ("ablation_sorted_by_chars", "pipeline_parquet"),
    ("ablation_os_no_overlap", "pipeline_opensearch"),
    ("ablation_os_in_flight_1", "pipeline_opensearch"),
    ("ablation_stage_no_overlap", "indexing_stage"),
    ("ablation_os_refresh_disabled", "pipeline_opensearch"),
    ("ablation_stage_refresh_disabled", "indexing_stage"),
    ("ablation_raw_encode_1_thread", "raw_encode"),
)
ONCE = ("indexing_stage",)  # runs measured once, not per batch size


class _Ratios:
    """Ratios of docs/s between runs, keyed ``numerator/denominator`` then by where ("B=32", "once", a backend)."""

    def __init__(self, runs: list[dict[str, Any]]):
        self.runs = runs
        self.ratios: dict[str, Any] = {}
        self.targets: list[dict[str, Any]] = []

    def get(self, name: str, b: int | None) -> dict[str, Any] | None:
        return next((r for r in self.runs if r["name"] == name and (b is None or r["batch_size"] == b)), None)

    def rate(self, name: str, b: int | None, key: str = "docs_per_second") -> float | None:
        r = self.get(name, b)
        return r.get(key) if r else None

    def add(self, key: str, label: str, num: float | None, den: float | None) -> None:
        """``num / den`` under ``key`` / ``label`` (nothing when either run is missing), checked against TARGETS."""
        if num is None or den is None:
            return
        v = round(num / den, 3)
        self.ratios.setdefault(key, {})[label] = v
        if key in TARGETS:
            self.targets.append({"ratio": key, "at": label, "value": v, "target": TARGETS[key], "met": v >= TARGETS[key]})

    def value(self, key: str, label: str, v: float) -> None:
        """A value that is not a ratio of rates (the int8 backends' smallest cosine), checked against TARGETS."""
        self.ratios.setdefault(key, {})[label] = v
        self.targets.append({"ratio": key, "at": label, "value": v, "target": TARGETS[key], "met": v >= TARGETS[key]})


def ratios(
    runs: list[dict[str, Any]], batch_sizes: list[int], b0: int, backend_rows: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(ratios, targets): the pipeline against each baseline per batch size, the ablations and backends at ``b0``."""
    q = _Ratios(runs)
    for b in batch_sizes:
        raw = q.rate("raw_encode", b)
        q.add("pipeline_parquet/raw_encode", f"B={b}", q.rate("pipeline_parquet", b), raw)
        q.add("pipeline_opensearch/raw_encode", f"B={b}", q.rate("pipeline_opensearch", b), raw)
        mlt = q.rate("mltransform", b, "docs_per_second_excl_load")  # the figure the target is for (see the notes)
        q.add("pipeline_parquet/mltransform", f"B={b}", q.rate("pipeline_parquet", b), mlt)
        q.add("pipeline_parquet/mltransform_incl_load", f"B={b}", q.rate("pipeline_parquet", b), q.rate("mltransform", b))
    q.add("indexing_stage/raw_bulk", "once", q.rate("indexing_stage", None), q.rate("raw_bulk", None))
    b = b0
    raw = q.rate("raw_encode", b)
    for ablation, base in ABLATION_RATIOS:
        at, rb = ("once", None) if base in ONCE else (f"B={b}", b)
        q.add(f"{ablation}/{base}", at, q.rate(ablation, rb), q.rate(base, rb))
    for row in backend_rows:
        label = f"{row['backend']}{'+' + row['quantize'] if row['quantize'] else ''}"
        q.add("fast_backend/raw_encode", label, row["docs_per_second"], raw)
        if row["quantize"]:
            q.add("fast_backend_int8/raw_encode", label, row["docs_per_second"], raw)
            q.value("fast_backend_int8_min_cosine", label, row["min_cosine"])
    fast = q.get("pipeline_parquet_fast", b)
    if fast:
        q.add("pipeline_parquet_fast/raw_encode_fast", f"B={b}", fast["docs_per_second"], q.rate(fast["raw_run"], b))
        q.add("pipeline_parquet_fast/raw_encode", f"B={b}", fast["docs_per_second"], raw)
    return q.ratios, q.targets


def print_table(result: dict[str, Any]) -> None:
    """Every run (with its notes), then every ratio with its target, then what was skipped and why."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(
        title=f"neural-ingest benchmark: {result['corpus']['documents']} docs, {result['machine']['cores']} cores, "
        f"{result['machine']['cpu']}"
    )
    for col in ("run", "B", "docs/s", "seconds", "notes"):
        t.add_column(col, justify="right" if col in ("B", "docs/s", "seconds") else "left")
    for r in result["runs"]:
        notes = {k: v for k, v in r.items() if k not in ("name", "batch_size", "docs", "seconds", "docs_per_second")}
        t.add_row(
            r["name"],
            str(r["batch_size"] or "-"),
            f"{r['docs_per_second']:.1f}",
            f"{r['seconds']:.1f}",
            ", ".join(f"{k}={v}" for k, v in notes.items()),
        )
    console.print(t)
    rt = Table(title="ratios and targets")
    for col in ("ratio", "at", "value", "target", "met"):
        rt.add_column(col)
    targets = {(x["ratio"], x["at"]): x for x in result["targets"]}
    for key, vals in result["ratios"].items():
        for at, v in vals.items():
            tg = targets.get((key, at))
            rt.add_row(key, at, f"{v:.3f}", f">= {tg['target']}" if tg else "", ("yes" if tg["met"] else "NO") if tg else "")
    console.print(rt)
    for name, why in result["skipped"].items():
        console.print(f"skipped {name}: {why}")


def draw_chart(result: dict[str, Any], path: Path) -> None:
    """Three panels: throughput by configuration and batch size, the ablations, the encoder backends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    sizes = result["settings"]["batch_sizes"]
    b0 = result["settings"]["reference_batch_size"]
    main = [
        ("raw_encode", "raw encode"),
        ("pipeline_parquet", "pipeline -> Parquet"),
        ("pipeline_opensearch", "pipeline -> OpenSearch"),
        ("mltransform", "Beam MLTransform"),
    ]

    def rate(name: str, b: int | None) -> float:
        for r in runs:
            if r["name"] == name and r["batch_size"] == b:
                return r.get("docs_per_second_excl_load", r["docs_per_second"]) if name == "mltransform" else r["docs_per_second"]
        return 0.0

    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5), gridspec_kw={"width_ratios": [3, 2, 2]})
    ax = axes[0]
    width = 0.8 / max(len(sizes), 1)
    for i, b in enumerate(sizes):
        xs = [j + i * width for j in range(len(main))]
        vals = [rate(n, b) for n, _ in main]
        bars = ax.bar(xs, vals, width, label=f"batch {b}")
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks([j + width * (len(sizes) - 1) / 2 for j in range(len(main))], [label for _, label in main], fontsize=8)
    ax.set_ylabel("documents / second")
    ax.set_title("Throughput by configuration and batch size")
    ax.legend(fontsize=8)

    ax = axes[1]
    extra = [
        (r["name"].replace("ablation_", "").replace("pipeline_", "pipe_"), r["docs_per_second"])
        for r in runs
        if r["batch_size"] == b0
        and (r["name"].startswith("ablation_") or r["name"] in ("pipeline_parquet", "pipeline_opensearch"))
    ]
    if extra:
        bars = ax.barh([n for n, _ in extra], [v for _, v in extra], color="tab:gray")
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_title(f"Pipeline improvements on / off (batch {b0})")
    ax.set_xlabel("documents / second")
    ax.tick_params(axis="y", labelsize=7)

    ax = axes[2]
    be = [("torch fp32", rate("raw_encode", b0), 1.0)] + [
        (f"{r['backend']}{' int8' if r['quantize'] else ''}", r["docs_per_second"], r["min_cosine"])
        for r in result.get("backends", [])
    ]
    bars = ax.bar([n for n, _, _ in be], [v for _, v, _ in be], color="tab:green")
    ax.bar_label(bars, labels=[f"{v:.0f}\ncos>={c:.4f}" for _, v, c in be], fontsize=7)
    ax.set_title(f"Encoder backends, raw encode (batch {b0})")
    ax.set_ylabel("documents / second")
    ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(
        f"{result['corpus']['documents']} docs (Python docstrings), all-MiniLM-L6-v2, {result['machine']['cores']} cores, "
        f"{result['machine']['cpu']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

