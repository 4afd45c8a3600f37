"""Faster encoder backends and the GPU.

ONNX Runtime and OpenVINO, fp32 and int8: speed over torch fp32 and the smallest cosine to the torch
vectors over every document; the pipeline with the fastest int8 backend that keeps the cosine target;
and CUDA (raw model and pipeline), when torch sees a GPU.
"""
from __future__ import annotations

from typing import Any

from benchmarks.baselines import raw_encode
from benchmarks.common import timed
from benchmarks.harness import MODEL, Bench, log
from benchmarks.pipeline_runs import pipeline

VARIANTS: tuple[tuple[str, str | None], ...] = (("onnx", None), ("onnx", "int8"), ("openvino", None), ("openvino", "int8"))


def backends(bench: Bench, ref: Any) -> list[dict[str, Any]]:
    """One row per backend variant that runs here (one that cannot is in ``skipped``); ``ref``: torch fp32 vectors."""
    import numpy as np

    from neural_ingest.config import SentenceTransformersEncoderConfig
    from neural_ingest.encoders.dense import SentenceTransformerEncoder

    b = bench.b0
    base = _rate(bench, "raw_encode", b)
    rows: list[dict[str, Any]] = []
    for backend, quant in VARIANTS:
        name = f"raw_encode_{backend}{'_' + quant if quant else ''}"
        try:
            enc = SentenceTransformerEncoder(
                SentenceTransformersEncoderConfig(
                    model=MODEL,
                    device="cpu",
                    threads=bench.threads,
                    backend=backend,
                    quantize=quant,
                    backend_cache_dir=str(bench.cache / "backends"),
                )
            )
            load_s, loaded = timed(enc.load_model)
            loaded.model.encode(bench.w.texts[:64], batch_size=32)
            vecs = raw_encode(bench, b, name=name, model=loaded.model, backend=backend, quantize=quant)
        except Exception as e:  # noqa: BLE001 - a backend that cannot run here is reported, not fatal
            bench.skipped[name] = f"{type(e).__name__}: {str(e)[:300]}"
            log(f"{name}: skipped ({bench.skipped[name]})")
            continue
        cos = (vecs * ref).sum(1) / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(ref, axis=1))
        r = bench.get(name, b)
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
        rows.append(row)
        del loaded
    return rows


def fastest_int8_pipeline(bench: Bench, rows: list[dict[str, Any]], min_cosine: float) -> None:
    """The pipeline into Parquet with the fastest int8 backend whose smallest cosine is at least ``min_cosine``."""
    best = max(
        (r for r in rows if r["quantize"] and r["min_cosine"] >= min_cosine),
        key=lambda r: r["docs_per_second"],
        default=None,
    )
    if best:
        pipeline(
            bench,
            "parquet",
            bench.b0,
            "pipeline_parquet_fast",
            encoder={
                "backend": best["backend"],
                "quantize": best["quantize"],
                "backend_cache_dir": str(bench.cache / "backends"),
            },
            backend=best["backend"],
            quantize=best["quantize"],
            raw_run=best["run"],
        )


def gpu(bench: Bench) -> dict[str, Any]:
    """Raw model and pipeline on CUDA at the reference batch size, or why not."""
    import torch

    if not torch.cuda.is_available():
        return {"available": False, "reason": "torch sees no CUDA device on this machine"}
    from sentence_transformers import SentenceTransformer

    b = bench.b0
    texts = bench.w.texts
    m = SentenceTransformer(bench.w.model_dir, device="cuda", local_files_only=True)
    m.encode(texts[:64], batch_size=b)
    secs, _ = timed(lambda: m.encode(texts, batch_size=b, show_progress_bar=False))
    raw = bench.record("raw_encode_cuda", b, secs, len(texts), device=torch.cuda.get_device_name(0))
    pipe = pipeline(bench, "parquet", b, "pipeline_parquet_cuda", encoder={"device": "cuda"})
    return {
        "available": True,
        "device": torch.cuda.get_device_name(0),
        "raw_encode_docs_per_second": raw["docs_per_second"],
        "pipeline_parquet_docs_per_second": pipe["docs_per_second"],
        "ratio": round(pipe["docs_per_second"] / raw["docs_per_second"], 3),
    }


def _rate(bench: Bench, name: str, b: int) -> Any:
    r = bench.get(name, b)
    if r is None:
        raise RuntimeError(f"backends: no {name} run at batch size {b} to compare with")
    return r["docs_per_second"]
