"""What the pipeline is compared with: the raw model (``raw_encode``) and Beam's own ``MLTransform``."""
from __future__ import annotations

import json
import shutil
from typing import Any

from benchmarks.common import timed
from benchmarks.harness import Bench


def raw_encode(bench: Bench, b: int, name: str = "raw_encode", model: Any = None, **extra: Any) -> Any:
    """``SentenceTransformer.encode(texts, batch_size=b)`` over the corpus in order (``model``: another loaded
    model with the same interface); returns the vectors as float32."""
    import numpy as np

    m = model or bench.w.st
    texts = bench.w.texts
    secs, vecs = timed(lambda: m.encode(texts, batch_size=b, convert_to_numpy=True, show_progress_bar=False))
    bench.record(name, b, secs, len(texts), **extra)
    return np.asarray(vecs, dtype=np.float32)


def mltransform(bench: Bench, b: int) -> None:
    """``MLTransform`` + ``SentenceTransformerEmbeddings`` (min = max batch = b), JSONL in, Parquet out."""
    import tempfile

    import apache_beam as beam
    import pyarrow as pa
    import pyarrow.parquet as pq
    from apache_beam.ml.transforms.base import MLTransform
    from apache_beam.ml.transforms.embeddings.huggingface import SentenceTransformerEmbeddings
    from apache_beam.options.pipeline_options import PipelineOptions

    w = bench.w
    artifacts = tempfile.mkdtemp(dir=bench.work)
    out = bench.work / f"mlt-{b}"
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("embedding", pa.list_(pa.float32()))])
    embed = SentenceTransformerEmbeddings(
        model_name=w.model_dir,
        columns=["embedding"],
        max_seq_length=w.max_seq_length,
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
            | beam.io.ReadFromText(w.corpus.path)
            | beam.Map(to_row)
            | MLTransform(write_artifact_location=artifacts).with_transform(embed)
            | beam.Map(lambda r: {"id": r["id"], "text": r["text"], "embedding": [float(x) for x in r["embedding"]]})
            | beam.io.WriteToParquet(str(out / "part"), schema, file_name_suffix=".parquet")
        )
        p.run().wait_until_finish()

    load = _st_load_seconds(bench)
    secs, _ = timed(go)
    rows = sum(pq.read_metadata(f).num_rows for f in out.glob("part*.parquet"))
    shutil.rmtree(out, ignore_errors=True)
    # MLTransform's RunInference loads its own copy of the model inside the run; the pipeline's was
    # loaded before. docs_per_second_excl_load takes that load (timed here separately) out again.
    r = bench.record("mltransform", b, secs, rows, model_load_seconds_estimate=round(load, 2))
    r["docs_per_second_excl_load"] = round(rows / max(secs - load, 1e-9), 2)


def _st_load_seconds(bench: Bench) -> float:
    """What MLTransform's own model load costs, measured once, warm, outside any run."""
    if bench.st_load_seconds is None:
        from sentence_transformers import SentenceTransformer

        model_dir = bench.w.model_dir
        bench.st_load_seconds, _ = timed(lambda: SentenceTransformer(model_dir, device="cpu", local_files_only=True))
    return bench.st_load_seconds
