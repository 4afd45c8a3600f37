"""Side-by-side throughput benchmark: raw model, the pipeline, raw bulk indexing, Beam's MLTransform.

One command, one machine, one run, one real-text corpus (benchmarks/corpus.py):

    python -m benchmarks.run --docs 3000 --batch-sizes 16,32,64 --out benchmarks/results/

measures, for each batch size B (same model, max_seq_length and thread count everywhere):

1. ``raw_encode``: ``SentenceTransformer.encode(texts, batch_size=B)`` over the texts in corpus order
   (sentence-transformers sorts the texts of one call by character length itself);
2. ``pipeline_parquet``: ``run_ingest`` end to end (read JSONL, prepare, encode, write) into Parquet;
3. ``pipeline_opensearch``: the same into a real OpenSearch (fresh k-NN index, lucene HNSW);
6. ``recall``: k-NN engines and HNSW parameters side by side (benchmarks/recall.py): recall@10 of a plain
   client ``k: 10`` query, build time, index size;
5. ``mltransform``: Beam's ``MLTransform`` + ``SentenceTransformerEmbeddings`` (min = max batch = B),
   JSONL in, Parquet out;

and once, at the middle batch size:

4. ``raw_bulk`` (``opensearchpy.helpers.bulk`` of the raw vectors into a fresh index with the same
   mapping) against ``indexing_stage`` (the pipeline's own sink stage fed the same vectors);
- ablations: fixed-size batches, batches sorted by characters, bulk requests in line (no overlap),
  refreshes disabled while loading (bulk_refresh: disable), one torch thread;
- faster backends: ONNX Runtime and OpenVINO, fp32 and int8, speed-up over torch fp32 and the smallest
  cosine to the torch vectors over every document; the pipeline with the fastest int8 one;
- CUDA, when torch sees a GPU.

It prints a table, writes ``results.json`` and ``chart.png`` into ``--out``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
MODEL = "huggingface/sentence-transformers/all-MiniLM-L6-v2"
SCHEMA = 1

TARGETS = {
    "pipeline_parquet/raw_encode": 0.95,
    "pipeline_opensearch/raw_encode": 0.90,
    "pipeline_parquet/mltransform": 1.10,
    "indexing_stage/raw_bulk": 0.90,
    "fast_backend_int8/raw_encode": 1.80,
    "fast_backend_int8_min_cosine": 0.99,
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- machine
def machine_info() -> dict[str, Any]:
    import importlib.metadata as md

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    versions = {}
    for pkg in (
        "torch",
        "sentence-transformers",
        "transformers",
        "apache-beam",
        "opensearch-py",
        "onnxruntime",
        "openvino",
        "nncf",
    ):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "load_average_start": list(os.getloadavg()),
    }


# --------------------------------------------------------------------------- helpers
def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


class Bench:
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
        self.threads = args.threads or os.cpu_count() or 1
        self.os_url: str | None = None
        self.os_started = False
        self.vectors: dict[int, Any] = {}

    # ------------------------------------------------------------------ records
    def record(self, name: str, batch_size: int | None, seconds: float, docs: int, **extra: Any) -> dict[str, Any]:
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
        for r in self.runs:
            if r["name"] == name and (batch_size is None or r["batch_size"] == batch_size):
                return r
        return None

    # ------------------------------------------------------------------ corpus and model
    def setup(self) -> None:
        import torch

        from benchmarks.corpus import build_corpus, load_texts
        from neural_ingest.config import SentenceTransformersEncoderConfig
        from neural_ingest.encoders.dense import SentenceTransformerEncoder

        torch.set_num_threads(self.threads)
        self.corpus = build_corpus(self.args.docs, self.cache)
        self.records = load_texts(self.corpus.path)
        self.texts = [r["text"] for r in self.records]
        enc = SentenceTransformerEncoder(SentenceTransformersEncoderConfig(model=MODEL, device="cpu", threads=self.threads))
        self.model_load_seconds, self.held = timed(enc.acquire)  # held: every pipeline run reuses this model
        self.st = self.held.model
        self.max_seq_length = int(self.st.max_seq_length)
        self.model_dir = self.held.info.extra["path"]
        tok = self.st.tokenizer(self.texts, truncation=True, max_length=self.max_seq_length)["input_ids"]
        lengths = sorted(len(x) for x in tok)
        full = self.st.tokenizer(self.texts, truncation=False)["input_ids"]
        self.token_stats = {
            "mean": round(sum(lengths) / len(lengths), 1),
            "median": lengths[len(lengths) // 2],
            "p90": lengths[int(0.9 * (len(lengths) - 1))],
            "max_after_truncation": lengths[-1],
            "truncated_docs": sum(len(x) > self.max_seq_length for x in full),
        }
        self.st.encode(self.texts[:64], batch_size=32, show_progress_bar=False)  # warm-up (kernels, allocator)
        log(
            f"corpus {self.corpus.documents} docs {self.token_stats}; "
            f"model loaded in {self.model_load_seconds:.1f}s; threads {self.threads}"
        )

    # ------------------------------------------------------------------ 1. raw encode
    def raw_encode(self, b: int, name: str = "raw_encode", model: Any = None, **extra: Any) -> Any:
        import numpy as np

        m = model or self.st
        secs, vecs = timed(lambda: m.encode(self.texts, batch_size=b, convert_to_numpy=True, show_progress_bar=False))
        self.record(name, b, secs, len(self.texts), **extra)
        return np.asarray(vecs, dtype=np.float32)

    # ------------------------------------------------------------------ 2./3. the pipeline
    def pipeline_config(self, sink: str, b: int, tag: str, encoder: dict | None = None, sink_extra: dict | None = None):
        from neural_ingest.config import parse_config

        enc = {"type": "sentence_transformers", "model": MODEL, "device": "cpu", "batch_size": b, "threads": self.threads}
        enc.update(encoder or {})
        data: dict[str, Any] = {
            "run": {"name": f"bench-{tag}", "progress_every_seconds": 3600},
            "source": {
                "type": "jsonl",
                "path": self.corpus.path,
                "id_field": "id",
                "text_fields": ["text"],
                "metadata_fields": ["source"],
            },
            "encoder": enc,
            "dead_letter": {"path": str(self.work / "dlq")},
        }
        if sink == "parquet":
            data["sink"] = {"type": "parquet", "path": str(self.work / f"ds-{tag}")}
        else:
            data["sink"] = {
                "type": "opensearch",
                "hosts": [self.os_url],
                "index": f"bench-{tag}-{uuid.uuid4().hex[:6]}",
                "knn": {"engine": "lucene"},
            }
            data["sink"].update(sink_extra or {})
        return parse_config(data)

    def pipeline(self, sink: str, b: int, name: str, encoder: dict | None = None, sink_extra: dict | None = None, **extra: Any):
        from neural_ingest.pipelines.ingest import run_ingest

        cfg = self.pipeline_config(sink, b, f"{name}-{b}", encoder, sink_extra)
        secs, summary = timed(lambda: run_ingest(cfg))
        if summary.indexed != len(self.texts) or summary.failed:
            raise RuntimeError(f"{name}: indexed {summary.indexed} of {len(self.texts)}, failed {summary.failed_by_reason}")
        info: dict[str, Any] = {}
        if sink == "opensearch":
            client = self.os_client()
            index = cfg.sink.index
            count = client.count(index=index)["count"]
            settings = client.indices.get_settings(index=index)[index]["settings"]["index"]
            info = {"count_in_index": count, "refresh_interval_after": settings.get("refresh_interval", "default")}
            client.indices.delete(index=index, ignore=[404])
        else:
            shutil.rmtree(cfg.sink.path, ignore_errors=True)
        return self.record(name, b, secs, len(self.texts), **info, **extra)

    # ------------------------------------------------------------------ OpenSearch
    def os_client(self):
        from opensearchpy import OpenSearch

        return OpenSearch(hosts=[self.os_url], timeout=120)

    def start_opensearch(self) -> None:
        if "opensearch" in self.skip:
            self.skipped["opensearch"] = "--skip opensearch"
            return
        if self.args.opensearch_url:
            self.os_url = self.args.opensearch_url
            self.os_client().cluster.health(wait_for_status="yellow", request_timeout=60)
            return
        script = ROOT / "scripts" / "opensearch-local.sh"
        name, port = "bench", str(self.args.opensearch_port)
        status = subprocess.run(["bash", str(script), "status", "--name", name], capture_output=True, text=True, check=False)
        if status.returncode != 0:
            log(f"starting OpenSearch instance {name} on port {port} (scripts/opensearch-local.sh)")
            r = subprocess.run(
                ["bash", str(script), "start", "--name", name, "--port", port, "--plugins", "knn", "--heap", "1g"],
                capture_output=True,
                text=True,
                check=False,
            )
            if r.returncode != 0:
                self.skipped["opensearch"] = f"could not start OpenSearch: {(r.stderr or r.stdout)[-500:]}"
                log(self.skipped["opensearch"])
                return
            self.os_started = True
        self.os_url = subprocess.run(
            ["bash", str(script), "url", "--name", name], capture_output=True, text=True, check=False
        ).stdout.strip()
        # opensearch-py 3 reads an API call's `timeout` as the client's request timeout (a number), so the
        # server-side wait keeps its default (30 s) and the client waits a little longer.
        self.os_client().cluster.health(wait_for_status="yellow", request_timeout=60)

    def stop_opensearch(self) -> None:
        if self.os_started and not self.args.keep_opensearch:
            subprocess.run(
                ["bash", str(ROOT / "scripts" / "opensearch-local.sh"), "stop", "--name", "bench"],
                capture_output=True,
                check=False,
            )

    def _sink_cfg(self, index: str, **extra: Any):
        from neural_ingest.config import OpenSearchSinkConfig

        return OpenSearchSinkConfig(hosts=[self.os_url], index=index, knn={"engine": "lucene"}, **extra)

    def raw_bulk(self, vectors: Any) -> None:
        from opensearchpy import helpers

        from neural_ingest.sinks.mapping import index_body

        client = self.os_client()
        cfg = self._sink_cfg(f"bench-rawbulk-{uuid.uuid4().hex[:6]}")
        fields = {"embedding": self.held.info}

        def go() -> None:
            client.indices.create(index=cfg.index, body=index_body(cfg, fields))
            actions = (
                {
                    "_index": cfg.index,
                    "_id": r["id"],
                    "_source": {"source": r["source"], "text": r["text"], "embedding": v.tolist()},
                }
                for r, v in zip(self.records, vectors)
            )
            ok, errors = helpers.bulk(
                client, actions, chunk_size=cfg.bulk.max_docs, max_chunk_bytes=cfg.bulk.max_bytes, request_timeout=120
            )
            if errors or ok != len(self.records):
                raise RuntimeError(f"raw bulk: {ok} ok, errors {errors[:3]}")
            client.indices.refresh(index=cfg.index)

        secs, _ = timed(go)
        count = client.count(index=cfg.index)["count"]
        client.indices.delete(index=cfg.index, ignore=[404])
        self.record("raw_bulk", None, secs, len(self.records), count_in_index=count, chunk_size=cfg.bulk.max_docs)

    def indexing_stage(self, vectors: Any, name: str = "indexing_stage", **sink_extra: Any) -> None:
        import apache_beam as beam
        import numpy as np
        from apache_beam.options.pipeline_options import PipelineOptions

        from neural_ingest.sinks.opensearch import OpenSearchSink

        # The stage reads what the encoder would hand it from disk: a Create of 3000 vectors would
        # instead pickle and bz2-compress them all into the pipeline definition (seconds, not indexing).
        vec_path = self.work / "vectors.npy"
        np.save(vec_path, np.asarray(vectors, dtype=np.float32))
        n_docs = len(self.records)
        cfg = self._sink_cfg(f"bench-stage-{uuid.uuid4().hex[:6]}", **sink_extra)
        fields = {"embedding": self.held.info}

        def go() -> None:
            sink = OpenSearchSink(cfg)
            sink.chunking = None
            sink.prepare(fields, "bench")
            p = beam.Pipeline(options=PipelineOptions(["--runner", "DirectRunner"]))
            _ = (
                p
                | beam.Create([(self.corpus.path, str(vec_path))], reshuffle=False)
                | beam.FlatMap(_encoded_documents)
                | sink.write("bench", fields, 3600)
            )
            p.run().wait_until_finish()
            sink.finalize("bench", True)

        secs, _ = timed(go)
        client = self.os_client()
        count = client.count(index=cfg.index)["count"]
        client.indices.delete(index=cfg.index, ignore=[404])
        self.record(
            name,
            None,
            secs,
            n_docs,
            count_in_index=count,
            **{k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in sink_extra.items()},
        )

    # ------------------------------------------------------------------ 5. MLTransform
    def mltransform(self, b: int) -> None:
        import tempfile

        import apache_beam as beam
        import pyarrow as pa
        from apache_beam.ml.transforms.base import MLTransform
        from apache_beam.ml.transforms.embeddings.huggingface import SentenceTransformerEmbeddings
        from apache_beam.options.pipeline_options import PipelineOptions

        artifacts = tempfile.mkdtemp(dir=self.work)
        out = self.work / f"mlt-{b}"
        schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("embedding", pa.list_(pa.float32()))])
        embed = SentenceTransformerEmbeddings(
            model_name=self.model_dir,
            columns=["embedding"],
            max_seq_length=self.max_seq_length,
            min_batch_size=b,
            max_batch_size=b,
            inference_args={"batch_size": b, "show_progress_bar": False},
            load_model_args={"device": "cpu"},
        )

        def to_row(line: str) -> dict[str, Any]:
            r = json.loads(line)
            return {"id": r["id"], "text": r["text"], "embedding": r["text"]}  # the embedding column replaces its text

        def go() -> None:
            p = beam.Pipeline(options=PipelineOptions(["--runner", "DirectRunner"]))
            _ = (
                p
                | beam.io.ReadFromText(self.corpus.path)
                | beam.Map(to_row)
                | MLTransform(write_artifact_location=artifacts).with_transform(embed)
                | beam.Map(lambda r: {"id": r["id"], "text": r["text"], "embedding": [float(x) for x in r["embedding"]]})
                | beam.io.WriteToParquet(str(out / "part"), schema, file_name_suffix=".parquet")
            )
            p.run().wait_until_finish()

        if not hasattr(self, "_st_load_seconds"):  # what MLTransform's own load costs, measured warm, outside the run
            from sentence_transformers import SentenceTransformer

            self._st_load_seconds, _ = timed(lambda: SentenceTransformer(self.model_dir, device="cpu", local_files_only=True))
        secs, _ = timed(go)
        import pyarrow.parquet as pq

        rows = sum(pq.read_metadata(f).num_rows for f in out.glob("part*.parquet"))
        shutil.rmtree(out, ignore_errors=True)
        # MLTransform's RunInference loads its own copy of the model inside the run; the pipeline's was
        # loaded before. docs_per_second_excl_load takes that load (timed here separately) out again.
        load = self._st_load_seconds
        r = self.record("mltransform", b, secs, rows, model_load_seconds_estimate=round(load, 2))
        r["docs_per_second_excl_load"] = round(rows / max(secs - load, 1e-9), 2)

    # ------------------------------------------------------------------ fast backends
    def backends(self, ref: Any) -> None:
        import numpy as np

        from neural_ingest.config import SentenceTransformersEncoderConfig
        from neural_ingest.encoders.dense import SentenceTransformerEncoder

        b = self.b0
        base = self.get("raw_encode", b)["docs_per_second"]
        self.backend_rows: list[dict[str, Any]] = []
        for backend, quant in (("onnx", None), ("onnx", "int8"), ("openvino", None), ("openvino", "int8")):
            name = f"raw_encode_{backend}{'_' + quant if quant else ''}"
            try:
                enc = SentenceTransformerEncoder(
                    SentenceTransformersEncoderConfig(
                        model=MODEL,
                        device="cpu",
                        threads=self.threads,
                        backend=backend,
                        quantize=quant,
                        backend_cache_dir=str(self.cache / "backends"),
                    )
                )
                load_s, loaded = timed(enc.load_model)
                loaded.model.encode(self.texts[:64], batch_size=32)
                vecs = self.raw_encode(b, name=name, model=loaded.model, backend=backend, quantize=quant)
            except Exception as e:  # noqa: BLE001 - a backend that cannot run here is reported, not fatal
                self.skipped[name] = f"{type(e).__name__}: {str(e)[:300]}"
                log(f"{name}: skipped ({self.skipped[name]})")
                continue
            cos = (vecs * ref).sum(1) / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(ref, axis=1))
            r = self.get(name, b)
            row = {
                "backend": backend,
                "quantize": quant,
                "docs_per_second": r["docs_per_second"],
                "speedup_vs_torch_fp32": round(r["docs_per_second"] / base, 3),
                "min_cosine": round(float(cos.min()), 5),
                "mean_cosine": round(float(cos.mean()), 6),
                "load_or_export_seconds": round(load_s, 1),
                "graph": loaded.info.extra.get("graph"),
                "run": name,
            }
            r.update({k: row[k] for k in ("speedup_vs_torch_fp32", "min_cosine")})
            self.backend_rows.append(row)
            del loaded

    # ------------------------------------------------------------------ GPU
    def gpu(self) -> dict[str, Any]:
        import torch

        if not torch.cuda.is_available():
            return {"available": False, "reason": "torch sees no CUDA device on this machine"}
        from sentence_transformers import SentenceTransformer

        b = self.b0
        m = SentenceTransformer(self.model_dir, device="cuda", local_files_only=True)
        m.encode(self.texts[:64], batch_size=b)
        secs, _ = timed(lambda: m.encode(self.texts, batch_size=b, show_progress_bar=False))
        raw = self.record("raw_encode_cuda", b, secs, len(self.texts), device=torch.cuda.get_device_name(0))
        pipe = self.pipeline("parquet", b, "pipeline_parquet_cuda", encoder={"device": "cuda"})
        return {
            "available": True,
            "device": torch.cuda.get_device_name(0),
            "raw_encode_docs_per_second": raw["docs_per_second"],
            "pipeline_parquet_docs_per_second": pipe["docs_per_second"],
            "ratio": round(pipe["docs_per_second"] / raw["docs_per_second"], 3),
        }

    # ------------------------------------------------------------------ the whole run
    def run(self) -> dict[str, Any]:
        started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        machine = machine_info()
        self.setup()
        self.start_opensearch()
        try:
            for b in self.batch_sizes:
                self.vectors[b] = self.raw_encode(b)
                self.pipeline("parquet", b, "pipeline_parquet")
                if self.os_url:
                    self.pipeline("opensearch", b, "pipeline_opensearch")
                if "mltransform" not in self.skip:
                    self.mltransform(b)
            if "mltransform" in self.skip:
                self.skipped["mltransform"] = "--skip mltransform"
            ref = self.vectors[self.b0]
            if self.os_url:
                self.raw_bulk(ref)
                self.indexing_stage(ref)
            self.recall_rows: list[dict[str, Any]] = []
            if self.os_url and "recall" not in self.skip:  # k-NN engines / HNSW parameters: benchmarks/recall.py
                from benchmarks.recall import measure_grid

                self.recall_rows = measure_grid(self.os_url, self.corpus, self.records, self.held, self.cache)
            elif "recall" in self.skip:
                self.skipped["recall"] = "--skip recall"
            if "ablations" not in self.skip:
                self.ablations(ref)
            else:
                self.skipped["ablations"] = "--skip ablations"
            self.backend_rows = []
            if "backends" not in self.skip:
                self.backends(ref)
                best = max(
                    (
                        r
                        for r in self.backend_rows
                        if r["quantize"] and r["min_cosine"] >= TARGETS["fast_backend_int8_min_cosine"]
                    ),
                    key=lambda r: r["docs_per_second"],
                    default=None,
                )
                if best:
                    self.pipeline(
                        "parquet",
                        self.b0,
                        "pipeline_parquet_fast",
                        encoder={
                            "backend": best["backend"],
                            "quantize": best["quantize"],
                            "backend_cache_dir": str(self.cache / "backends"),
                        },
                        backend=best["backend"],
                        quantize=best["quantize"],
                        raw_run=best["run"],
                    )
            else:
                self.skipped["backends"] = "--skip backends"
            gpu = self.gpu() if "gpu" not in self.skip else {"available": False, "reason": "--skip gpu"}
        finally:
            self.stop_opensearch()
            shutil.rmtree(self.work, ignore_errors=True)
        machine["load_average_end"] = list(os.getloadavg())
        result = {
            "schema": SCHEMA,
            "started": started,
            "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
            "machine": machine,
            "corpus": {**self.corpus.as_dict(), "tokens": self.token_stats},
            "settings": {
                "model": MODEL,
                "model_dir": self.model_dir,
                "max_seq_length": self.max_seq_length,
                "threads": self.threads,
                "batch_sizes": self.batch_sizes,
                "reference_batch_size": self.b0,
                "opensearch": self.os_url,
                "model_load_seconds": round(self.model_load_seconds, 2),
                "notes": [
                    "raw_encode is one SentenceTransformer.encode call over all texts in corpus order: it sorts them "
                    "by character length itself, so its batches have little padding; the pipeline encodes batch by "
                    "batch and sorts windows of documents by token count (encoder batching: sorted).",
                    "pipeline runs start with the model already loaded (as a long-lived worker has it); MLTransform "
                    "loads its own copy inside the run: docs_per_second_excl_load takes that time out and is the "
                    "figure the ratio uses.",
                ],
            },
            "runs": self.runs,
            "backends": self.backend_rows,
            "recall": self.recall_rows,
            "gpu": gpu,
            "skipped": self.skipped,
        }
        result["ratios"], result["targets"] = self.ratios()
        return result

    def ablations(self, ref: Any) -> None:
        import torch

        b = self.b0
        self.pipeline("parquet", b, "ablation_fixed_batches", encoder={"batching": {"mode": "fixed"}}, batching="fixed")
        self.pipeline(
            "parquet", b, "ablation_sorted_by_chars", encoder={"batching": {"length": "chars"}}, batching="sorted/chars"
        )
        if self.os_url:
            self.pipeline("opensearch", b, "ablation_os_no_overlap", sink_extra={"bulk": {"in_flight": 0}}, in_flight=0)
            self.pipeline("opensearch", b, "ablation_os_in_flight_1", sink_extra={"bulk": {"in_flight": 1}}, in_flight=1)
            self.indexing_stage(ref, name="ablation_stage_no_overlap", bulk={"in_flight": 0})
            self.pipeline(
                "opensearch", b, "ablation_os_refresh_disabled", sink_extra={"bulk_refresh": "disable"}, bulk_refresh="disable"
            )
            self.indexing_stage(ref, name="ablation_stage_refresh_disabled", bulk_refresh="disable")
        if self.threads > 1 and "threads" not in self.skip:
            torch.set_num_threads(1)
            try:
                self.raw_encode(b, name="ablation_raw_encode_1_thread", threads=1)
            finally:
                torch.set_num_threads(self.threads)

    def ratios(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        ratios: dict[str, Any] = {}
        targets: list[dict[str, Any]] = []

        def rate(name: str, b: int | None, key: str = "docs_per_second") -> float | None:
            r = self.get(name, b)
            return r.get(key) if r else None

        def add(key: str, label: str, num: float | None, den: float | None) -> None:
            if num is None or den is None:
                return
            v = round(num / den, 3)
            ratios.setdefault(key, {})[label] = v
            if key in TARGETS:
                targets.append({"ratio": key, "at": label, "value": v, "target": TARGETS[key], "met": v >= TARGETS[key]})

        for b in self.batch_sizes:
            raw = rate("raw_encode", b)
            add("pipeline_parquet/raw_encode", f"B={b}", rate("pipeline_parquet", b), raw)
            add("pipeline_opensearch/raw_encode", f"B={b}", rate("pipeline_opensearch", b), raw)
            add(
                "pipeline_parquet/mltransform",
                f"B={b}",
                rate("pipeline_parquet", b),
                rate("mltransform", b, "docs_per_second_excl_load"),
            )
            add("pipeline_parquet/mltransform_incl_load", f"B={b}", rate("pipeline_parquet", b), rate("mltransform", b))
        add("indexing_stage/raw_bulk", "once", rate("indexing_stage", None), rate("raw_bulk", None))
        b = self.b0
        raw = rate("raw_encode", b)
        add("ablation_fixed_batches/pipeline_parquet", f"B={b}", rate("ablation_fixed_batches", b), rate("pipeline_parquet", b))
        add(
            "ablation_sorted_by_chars/pipeline_parquet",
            f"B={b}",
            rate("ablation_sorted_by_chars", b),
            rate("pipeline_parquet", b),
        )
        add(
            "ablation_os_no_overlap/pipeline_opensearch",
            f"B={b}",
            rate("ablation_os_no_overlap", b),
            rate("pipeline_opensearch", b),
        )
        add(
            "ablation_os_in_flight_1/pipeline_opensearch",
            f"B={b}",
            rate("ablation_os_in_flight_1", b),
            rate("pipeline_opensearch", b),
        )
        add(
            "ablation_stage_no_overlap/indexing_stage",
            "once",
            rate("ablation_stage_no_overlap", None),
            rate("indexing_stage", None),
        )
        add(
            "ablation_os_refresh_disabled/pipeline_opensearch",
            f"B={b}",
            rate("ablation_os_refresh_disabled", b),
            rate("pipeline_opensearch", b),
        )
        add(
            "ablation_stage_refresh_disabled/indexing_stage",
            "once",
            rate("ablation_stage_refresh_disabled", None),
            rate("indexing_stage", None),
        )
        add("ablation_raw_encode_1_thread/raw_encode", f"B={b}", rate("ablation_raw_encode_1_thread", b), raw)
        for row in getattr(self, "backend_rows", []):
            label = f"{row['backend']}{'+' + row['quantize'] if row['quantize'] else ''}"
            add("fast_backend/raw_encode", label, row["docs_per_second"], raw)
            if row["quantize"]:
                add("fast_backend_int8/raw_encode", label, row["docs_per_second"], raw)
                ratios.setdefault("fast_backend_int8_min_cosine", {})[label] = row["min_cosine"]
                targets.append(
                    {
                        "ratio": "fast_backend_int8_min_cosine",
                        "at": label,
                        "value": row["min_cosine"],
                        "target": TARGETS["fast_backend_int8_min_cosine"],
                        "met": row["min_cosine"] >= TARGETS["fast_backend_int8_min_cosine"],
                    }
                )
        fast = self.get("pipeline_parquet_fast", b)
        if fast:
            add("pipeline_parquet_fast/raw_encode_fast", f"B={b}", fast["docs_per_second"], rate(fast["raw_run"], b))
            add("pipeline_parquet_fast/raw_encode", f"B={b}", fast["docs_per_second"], raw)
        return ratios, targets


def _encoded_documents(paths: tuple[str, str]):
    """Documents as the encoder hands them to the sink: corpus records with their vectors."""
    import numpy as np

    from benchmarks.corpus import load_texts
    from neural_ingest.records import Document

    corpus, vectors = paths
    for r, v in zip(load_texts(corpus), np.load(vectors)):
        yield Document(id=r["id"], text=r["text"], metadata={"source": r["source"]}, embeddings={"embedding": v})


# --------------------------------------------------------------------------- output
def print_table(result: dict[str, Any]) -> None:
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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=3000, help="corpus size (Python docstrings, built once into --cache-dir)")
    ap.add_argument("--batch-sizes", default="16,32,64", help="comma-separated; the middle one is the reference")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="where results.json and chart.png go")
    ap.add_argument("--cache-dir", default=os.path.join(os.path.expanduser("~"), ".cache", "neural-ingest", "bench"))
    ap.add_argument("--threads", type=int, default=None, help="torch / runtime threads; default: all cores")
    ap.add_argument("--opensearch-url", default=None, help="use this OpenSearch instead of starting one")
    ap.add_argument("--opensearch-port", type=int, default=9270, help="port of the local instance started (name: bench)")
    ap.add_argument("--keep-opensearch", action="store_true", help="leave the started instance running")
    ap.add_argument(
        "--skip", default="", help="comma-separated: opensearch, mltransform, ablations, backends, threads, gpu, recall"
    )
    ap.add_argument("--no-chart", action="store_true")
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    for noisy in ("apache_beam", "nncf", "onnxruntime", "sentence_transformers", "transformers", "opensearch", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    result = Bench(args).run()
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    if not args.no_chart:
        draw_chart(result, out / "chart.png")
    print_table(result)
    log(f"wrote {out / 'results.json'}" + ("" if args.no_chart else f" and {out / 'chart.png'}"))
    return result


if __name__ == "__main__":
    main()
