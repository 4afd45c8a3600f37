"""Build ML Commons model zips from local files, for clusters that cannot download artifacts.

Dense models: the zip ML Commons expects of a sentence-transformers TorchScript model: ``<name>.pt``
(the whole SentenceTransformer traced with ``torch.jit.trace`` on ``{"input_ids", "attention_mask"}``, returning
``sentence_embedding``; pooling and normalization are inside the trace) and ``tokenizer.json``, with
truncation set to the model's ``max_seq_length`` (the "auto-truncation" of OpenSearch's own artifacts)
and no fixed padding.

The trace is made with the local torch; ML Commons runs it with the libtorch its DJL version ships, so
a trace from a much newer torch may not load on an older cluster (deploy then fails with the reason).

The sparse query tokenizer (SPARSE_TOKENIZE, opensearch-neural-sparse-tokenizer-v1): ``tokenizer.json``
and ``idf.json``, as OpenSearch's artifact holds them.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

from neural_ingest.catalogue import CatalogueEntry
from neural_ingest.model_resolve import resolve_model_dir


def export_torchscript(
    entry: CatalogueEntry,
    out: str | Path,
    *,
    model_path: str | None = None,
    models_dir: str | None = None,
) -> Path:
    """Trace ``entry``'s local weights into an ML Commons TorchScript zip at ``out``; return its path."""
    if entry.kind != "dense":
        raise ValueError(
            f"{entry.name} is a sparse model: export builds dense sentence-transformers zips only; "
            f"download its artifact ({entry.format().model_url}) on a machine with internet access"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    from neural_ingest.catalogue import verify_loaded
    from neural_ingest.model_resolve import short_name

    src = resolve_model_dir(entry.name, model_path, models_dir)
    model: Any = SentenceTransformer(str(src), device="cpu", local_files_only=True)  # loaded: its dimension is known
    verify_loaded(
        entry.name,
        dimension=int(model.get_embedding_dimension()),
        similarity=getattr(model, "_similarity_fn_name", None),
        normalized=any(type(m).__name__ == "Normalize" for m in model),
        source=str(src),
    )
    model.eval()
    model.max_seq_length = entry.max_seq_length
    tok = model.tokenizer
    sample = tok(
        ["an example sentence to trace", "a second, longer example sentence for the trace"], padding=True, return_tensors="pt"
    )
    features = {"input_ids": sample["input_ids"], "attention_mask": sample["attention_mask"]}
    # Tracing touches deprecated attributes and turns transformers' shape checks into constants (they
    # hold for any single input): warnings that are not the user's concern.
    st_log = logging.getLogger("sentence_transformers")
    level, hf_level = st_log.level, hf_logging.get_verbosity()
    st_log.setLevel(logging.ERROR)
    hf_logging.set_verbosity_error()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, (features,), strict=False)
    finally:
        st_log.setLevel(level)
        hf_logging.set_verbosity(hf_level)

    tokenizer_json = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer_json["truncation"] = {
        "direction": "Right",
        "max_length": entry.max_seq_length,
        "strategy": "LongestFirst",
        "stride": 0,
    }
    tokenizer_json["padding"] = None

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    name = short_name(entry.name)
    with tempfile.TemporaryDirectory() as tmp:
        pt = Path(tmp) / f"{name}.pt"
        traced.save(str(pt))
        tmp_zip = out.with_suffix(out.suffix + ".tmp")
        with zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_DEFLATED) as z:
            z.write(pt, pt.name)
            z.writestr("tokenizer.json", json.dumps(tokenizer_json, ensure_ascii=False))
        tmp_zip.replace(out)
    return out


def export_sparse_tokenizer(
    entry: CatalogueEntry,
    out: str | Path,
    *,
    model_path: str | None = None,
    models_dir: str | None = None,
    idf_path: str | None = None,
) -> Path:
    """An ML Commons SPARSE_TOKENIZE zip (``tokenizer.json`` + ``idf.json``) from local files.

    ``model_path`` is a directory with ``tokenizer.json`` (the query tokenizer, or the document model it
    serves: they share the bert-base-uncased vocabulary); the IDF table is ``idf_path`` (a file or a
    directory holding ``idf.json``), else the directory's own ``idf.json``. Without one, ML Commons
    weighs every query token 1.0.
    """
    if entry.function_name != "SPARSE_TOKENIZE":
        raise ValueError(f"{entry.name} is not a SPARSE_TOKENIZE model")
    src = Path(model_path).expanduser() if model_path else resolve_model_dir(entry.name, None, models_dir)
    if not (src / "tokenizer.json").is_file():
        raise ValueError(
            f"{src} has no tokenizer.json: point --model-path at the tokenizer's (or the document model's) directory"
        )
    idf_file = None
    if idf_path:
        idf_file = Path(idf_path) / "idf.json" if Path(idf_path).is_dir() else Path(idf_path)
        if not idf_file.is_file():
            raise ValueError(f"idf_path {idf_path}: no idf.json there")
    elif (src / "idf.json").is_file():
        idf_file = src / "idf.json"
    tokenizer_json = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer_json["truncation"] = {
        "direction": "Right",
        "max_length": entry.max_seq_length,
        "strategy": "LongestFirst",
        "stride": 0,
    }
    tokenizer_json["padding"] = None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_zip = out.with_suffix(out.suffix + ".tmp")
    with zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("tokenizer.json", json.dumps(tokenizer_json, ensure_ascii=False))
        if idf_file:
            z.writestr("idf.json", json.dumps(json.loads(idf_file.read_text(encoding="utf-8"))))
    tmp_zip.replace(out)
    return out


def export_artifact(entry: CatalogueEntry, out: str | Path, **kwargs: Any) -> Path:
    """The ML Commons zip for ``entry`` from local files: dense models are traced, the sparse query
    tokenizer is packed; sparse encoders are not built here (use OpenSearch's artifact)."""
    if entry.kind == "dense":
        kwargs.pop("idf_path", None)
        return export_torchscript(entry, out, **kwargs)
    if entry.function_name == "SPARSE_TOKENIZE":
        return export_sparse_tokenizer(entry, out, **kwargs)
    raise ValueError(
        f"{entry.name}: building a sparse encoder's TorchScript zip is not supported; download "
        f"{entry.format().model_url} where there is internet access and pass it with --artifact"
    )
