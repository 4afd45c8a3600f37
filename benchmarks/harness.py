"""The state one throughput run shares (benchmarks/run.py): settings, the corpus and loaded model, the measurements.

Every measurement module (baselines, pipeline_runs, opensearch_runs, ablations, backends) takes a
:class:`Bench`, measures, and calls :meth:`Bench.record`; report.py reads ``bench.runs`` back.
"""
from __future__ import annotations

import argparse
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import logger, timed

MODEL = "huggingface/sentence-transformers/all-MiniLM-L6-v2"

log = logger("bench")


@dataclass
class Workload:
    """The corpus and the model every measurement uses: loaded once, before any clock starts."""

    corpus: Any  # benchmarks.corpus.CorpusInfo
    records: list[dict[str, Any]]
    texts: list[str]
    held: Any  # the encoder's Loaded: every pipeline run reuses this model, as a long-lived worker has it
    model_load_seconds: float
    token_stats: dict[str, Any]

    @property
    def st(self) -> Any:
        """The SentenceTransformer itself."""
        return self.held.model

    @property
    def max_seq_length(self) -> int:
        return int(self.st.max_seq_length)

    @property
    def model_dir(self) -> Any:
        return self.held.info.extra["path"]


class Bench:
    """Settings from the command line, the workload, the OpenSearch URL, and the runs measured so far."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.cache = Path(args.cache_dir).expanduser()
        self.work = self.cache / f"work-{uuid.uuid4().hex[:6]}"
        self.work.mkdir(parents=True, exist_ok=True)
        self.runs: list[dict[str, Any]] = []
        self.skipped: dict[str, str] = {}
        self.batch_sizes = [int(b) for b in str(args.batch_sizes).split(",") if b.strip()]
        self.b0 = self.batch_sizes[len(self.batch_sizes) // 2]
        self.skip = {s.strip() for s in (args.skip or "").split(",") if s.strip()}
        self.threads: int = args.threads or os.cpu_count() or 1
        self.os_url: str | None = None  # the OpenSearch measured against (opensearch_node.start); None: skipped
        self.os_started = False  # whether this run started that node (and so stops it)
        self.st_load_seconds: float | None = None  # a bare SentenceTransformer load, measured once (baselines.mltransform)
        self.w: Workload  # set by setup()

    def setup(self) -> None:
        """Build (or reuse) the corpus, load the model, measure its token lengths, warm it up."""
        import torch

        from benchmarks.corpus import build_corpus, load_texts
        from neural_ingest.config import SentenceTransformersEncoderConfig
        from neural_ingest.encoders.dense import SentenceTransformerEncoder

        torch.set_num_threads(self.threads)
        corpus = build_corpus(self.args.docs, self.cache)
        records = load_texts(corpus.path)
        texts = [r["text"] for r in records]
        enc = SentenceTransformerEncoder(SentenceTransformersEncoderConfig(model=MODEL, device="cpu", threads=self.threads))
        load_seconds, held = timed(enc.acquire)
        st = held.model
        self.w = Workload(corpus, records, texts, held, load_seconds, _token_stats(st, texts))
        st.encode(texts[:64], batch_size=32, show_progress_bar=False)  # warm-up (kernels, allocator)
        log(f"corpus {corpus.documents} docs {self.w.token_stats}; model loaded in {load_seconds:.1f}s; threads {self.threads}")

    def record(self, name: str, batch_size: int | None, seconds: float, docs: int, **extra: Any) -> dict[str, Any]:
        """One measurement: appended to ``runs`` (the order is the table's) and logged."""
        r = {
            "name": name,
            "batch_size": batch_size,
            "docs": docs,
            "seconds": round(seconds, 3),
            "docs_per_second": round(docs / seconds, 2) if seconds > 0 else None,
            **extra,
        }
        self.runs.append(r)
        log(
            f"{name:<28} B={batch_size!s:<4} {r['docs_per_second']!s:>8} docs/s  ({seconds:.1f} s)"
            f"{'  ' + json.dumps(extra) if extra else ''}"
        )
        return r

    def get(self, name: str, batch_size: int | None = None) -> dict[str, Any] | None:
        """The first run named ``name`` (at ``batch_size``, when given)."""
        for r in self.runs:
            if r["name"] == name and (batch_size is None or r["batch_size"] == batch_size):
                return r
        return None


def _token_stats(st: Any, texts: list[str]) -> dict[str, Any]:
    """Token lengths of the corpus after truncation, and how many documents the model truncates."""
    max_len = int(st.max_seq_length)
    lengths = sorted(len(x) for x in st.tokenizer(texts, truncation=True, max_length=max_len)["input_ids"])
    full = st.tokenizer(texts, truncation=False)["input_ids"]
    return {
        "mean": round(sum(lengths) / len(lengths), 1),
        "median": lengths[len(lengths) // 2],
        "p90": lengths[int(0.9 * (len(lengths) - 1))],
        "max_after_truncation": lengths[-1],
        "truncated_docs": sum(len(x) > max_len for x in full),
    }
