"""Local neural sparse encoder: OpenSearch's neural sparse models through sentence-transformers.

Documents go through the masked-LM model the way these models define it: MLM logits ->
activation -> max over the (attention-masked) sequence -> special tokens left out, giving a map of
vocabulary token strings (as OpenSearch emits them, e.g. ``"##ing"``) to positive weights.

sentence-transformers' ``SparseEncoder`` does the heavy part (``Transformer(fill-mask)`` +
``SpladePooling``). Two things it does not do the OpenSearch way are handled here:

- ``SpladePooling`` keeps the special tokens ([CLS], [SEP], [PAD], [UNK], [MASK]); the OpenSearch
  models zero them, so their columns are cleared after pooling.
- The activation names differ: ``SpladePooling(activation_function="relu")`` computes
  log(1 + relu(x)) (our ``log1p_relu``: v1/v2 models) and ``"log1p_relu"`` computes
  log(1 + log(1 + relu(x))) (our ``log1p_log1p_relu``: doc-v3 models). A model saved with
  sentence-transformers carries its activation; a bare Hugging Face masked-LM directory does not,
  so it comes from config, then the catalogue below, then defaults to ``log1p_relu``.

Queries: bi-encoders (``query_mode: model``) encode queries with the model, unpruned.
Document-only models (``query_mode: tokenizer``) tokenize the query without special tokens, take
each distinct token once and weight it from an IDF table, the way ml-commons' SPARSE_TOKENIZE
(opensearch-neural-sparse-tokenizer-v1) does: ``idf.get(token, 1.0)``. The table is ``idf_path``,
else the model directory's ``idf.json``; a sentence-transformers model with a query route
(``Router`` -> ``SparseStaticEmbedding``) uses that route's weights instead.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from neural_ingest.config import NeuralSparseEncoderConfig
from neural_ingest.encoders.base import Encoder, Loaded, ModelInfo, SettingsFromConfig, Vector
from neural_ingest.encoders.device import resolve_device
from neural_ingest.encoders.sparse_prune import prune
from neural_ingest.model_resolve import resolve_model_dir, short_name

log = logging.getLogger(__name__)

# Known OpenSearch sparse models (short name -> query mode, activation); model-facts.md.
SPARSE_MODELS: dict[str, tuple[str, str]] = {
    "opensearch-neural-sparse-encoding-v1": ("model", "log1p_relu"),
    "opensearch-neural-sparse-encoding-v2-distill": ("model", "log1p_relu"),
    "opensearch-neural-sparse-encoding-doc-v1": ("tokenizer", "log1p_relu"),
    "opensearch-neural-sparse-encoding-doc-v2-distill": ("tokenizer", "log1p_relu"),
    "opensearch-neural-sparse-encoding-doc-v2-mini": ("tokenizer", "log1p_relu"),
    "opensearch-neural-sparse-encoding-doc-v3-distill": ("tokenizer", "log1p_log1p_relu"),
    "opensearch-neural-sparse-encoding-doc-v3-gte": ("tokenizer", "log1p_log1p_relu"),
}
# The query-side tokenizer model (SPARSE_TOKENIZE): its idf.json is a query weight table, not an encoder.
SPARSE_TOKENIZERS = {"opensearch-neural-sparse-tokenizer-v1"}

# our activation name <-> SpladePooling.activation_function
_TO_ST: dict[str, Literal["relu", "log1p_relu"]] = {"log1p_relu": "relu", "log1p_log1p_relu": "log1p_relu"}
_FROM_ST = {v: k for k, v in _TO_ST.items()}


@dataclass
class SparseModel:
    """The loaded model and what query/document encoding need beside it."""

    st: Any  # sentence_transformers.SparseEncoder
    tokenizer: Any
    vocab: list[str]  # output dimension -> token string
    special_ids: np.ndarray
    activation: str
    query_mode: str
    max_seq_length: int
    idf: dict[str, float] | None = None  # tokenizer-mode weight table (None: use the model's query route)
    idf_source: str | None = None
    static_query_route: bool = False
    notes: list[str] = field(default_factory=list)


def load_idf(path: str | Path) -> tuple[dict[str, float], str]:
    """An IDF table from ``idf.json`` or a directory holding one."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "idf.json"
    if not p.is_file():
        raise FileNotFoundError(f"idf_path {path}: no idf.json there; point it at the file or its directory")
    data = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a JSON object of token -> weight")
    return {str(k): float(v) for k, v in data.items()}, str(p)


def _catalogue_facts(name: str) -> tuple[str | None, str | None, str | None]:
    """(query mode, activation, query-side model) for a known model name; Nones for a path or unknown name."""
    short = short_name(name)
    mode, activation = SPARSE_MODELS.get(short, (None, None))
    query_model = "opensearch-neural-sparse-tokenizer-v1" if mode == "tokenizer" else None
    try:  # the project catalogue (neural_ingest.catalogue), where it knows the model
        from neural_ingest import catalogue

        entry = catalogue.lookup(name)
    except ImportError:  # pragma: no cover - the catalogue is part of the package
        entry = None
    if entry is not None and entry.kind == "sparse":
        role = getattr(entry, "role", None)
        mode = {"bi-encoder": "model", "document-only": "tokenizer"}.get(role or "", mode)
        query_model = getattr(entry, "query_model", None) or query_model
    return mode, activation, query_model


def _query_model_idf(query_model: str, models_dir: str | None) -> Path | None:
    """The idf.json of a document-only model's query tokenizer (e.g. opensearch-neural-sparse-tokenizer-v1),
    if present locally."""
    from neural_ingest import model_resolve as mr

    short = short_name(query_model)
    candidates = [Path(query_model).expanduser()]
    for base in (models_dir, os.environ.get("NEURAL_INGEST_MODELS")):
        if base:
            candidates += [Path(base) / short, *(Path(base) / org / short for org in mr._HF_ORGS)]
    for cache in mr._hf_cache_dirs():
        candidates += [snap for org in mr._HF_ORGS if (snap := mr._hf_snapshot(cache, org, short)) is not None]
    for d in candidates:
        if (d / "idf.json").is_file():
            return d / "idf.json"
    return None


class NeuralSparseEncoder(SettingsFromConfig, Encoder[SparseModel]):
    cfg: NeuralSparseEncoderConfig
    kind = "sparse"
    counts_tokens = True

    def __init__(self, cfg: NeuralSparseEncoderConfig):
        self.cfg = cfg

    def share_key(self) -> str:
        c = self.cfg
        return (
            f"sparse:{c.model}:{c.model_path}:{c.models_dir}:{c.device}:{c.max_seq_length}:{c.activation}:"
            f"{c.query_mode}:{c.idf_path}"
        )

    # ------------------------------------------------------------------ loading
    def load_model(self) -> Loaded[SparseModel]:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SparseEncoder
        from sentence_transformers.sparse_encoder.modules import Router, SparseStaticEmbedding, SpladePooling, Transformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        c = self.cfg
        short = short_name(c.model)
        if short in SPARSE_TOKENIZERS and not c.model_path:
            raise ValueError(
                f"{short} is the query-side tokenizer of document-only models (SPARSE_TOKENIZE), not a document "
                "encoder: configure a document model (e.g. opensearch-neural-sparse-encoding-doc-v1) and point "
                f"idf_path at {short}'s directory"
            )
        path = resolve_model_dir(c.model, c.model_path, c.models_dir)
        device = resolve_device(c.device)
        if c.threads:
            import torch

            torch.set_num_threads(c.threads)
        st = SparseEncoder(str(path), device=device, local_files_only=True)
        catalogue_mode, catalogue_act, query_model = _catalogue_facts(c.model)
        st_native = (path / "modules.json").is_file()

        modules = list(st.modules())
        poolings = [m for m in modules if isinstance(m, SpladePooling)]
        if not poolings:
            raise ValueError(
                f"model {c.model} at {path} has no SpladePooling module: it is not a masked-LM sparse model "
                "(neural_sparse needs MLM logits -> activation -> max pooling)"
            )
        # Activation: config > the model's own files > catalogue > log1p_relu.
        activation: str
        if c.activation:
            activation, why = c.activation, "config"
        elif st_native:
            activation, why = _FROM_ST[poolings[0].activation_function], "model files"
        elif catalogue_act:
            activation, why = catalogue_act, "catalogue"
        else:
            activation, why = "log1p_relu", "default"
        for p in poolings:
            p.activation_function = _TO_ST[activation]

        transformers_ = [m for m in modules if isinstance(m, Transformer)]
        if c.max_seq_length:
            for t in transformers_:
                t.max_seq_length = c.max_seq_length
        max_len = int(min((t.max_seq_length or 512) for t in transformers_)) if transformers_ else 512

        routers = [m for m in modules if isinstance(m, Router)]
        query_route: Any = routers[0].sub_modules["query"] if routers and "query" in routers[0].sub_modules else None
        static_query = query_route is not None and not any(isinstance(m, SpladePooling) for m in query_route)
        tokenizer = st.tokenizer
        if tokenizer is None and transformers_:
            tokenizer = transformers_[0].tokenizer
        if tokenizer is None:
            static = [m for m in modules if isinstance(m, SparseStaticEmbedding)]
            tokenizer = static[0].tokenizer if static else None
        if tokenizer is None:
            raise ValueError(f"model {c.model} at {path}: no tokenizer found")

        # Query mode: config > the model's own query route > catalogue > an idf.json beside the model > model.
        query_mode: str
        if c.query_mode:
            query_mode = c.query_mode
        elif query_route is not None:
            query_mode = "tokenizer" if static_query else "model"
        elif catalogue_mode:
            query_mode = catalogue_mode
        elif (path / "idf.json").is_file():
            query_mode = "tokenizer"
        else:
            query_mode = "model"

        idf = idf_source = None
        notes: list[str] = []
        if query_mode == "tokenizer":
            if c.idf_path:
                idf, idf_source = load_idf(c.idf_path)
            elif (path / "idf.json").is_file():
                idf, idf_source = load_idf(path)
            elif static_query:
                idf_source = "model query route (SparseStaticEmbedding)"
            elif query_model and (query_idf := _query_model_idf(query_model, c.models_dir)) is not None:
                idf, idf_source = load_idf(query_idf)
            else:
                idf, idf_source = {}, "none (every token weighs 1.0)"
                notes.append("no IDF table: query tokens all weigh 1.0; set idf_path to the model's idf.json")
                log.warning("sparse model %s: no idf.json for tokenizer-mode queries; every query token weighs 1.0", c.model)

        # One warm-up encode: checks the model runs and gives the output (vocabulary) dimension.
        dim = int(st.encode_document(["warm up"], convert_to_tensor=True, convert_to_sparse_tensor=False).shape[-1])
        vocab = tokenizer.convert_ids_to_tokens(list(range(dim)))
        vocab = [t if t is not None else f"[unused{i}]" for i, t in enumerate(vocab)]
        special = np.asarray(sorted(i for i in set(tokenizer.all_special_ids) if 0 <= i < dim), dtype=np.int64)

        model = SparseModel(
            st=st,
            tokenizer=tokenizer,
            vocab=vocab,
            special_ids=special,
            activation=activation,
            query_mode=query_mode,
            max_seq_length=max_len,
            idf=idf,
            idf_source=idf_source,
            static_query_route=static_query and idf is None,
            notes=notes,
        )
        info = ModelInfo(
            name=c.model,
            kind="sparse",
            dimension=dim,
            similarity="dot",
            normalized=False,
            max_seq_length=max_len,
            extra={
                "path": str(path),
                "device": device,
                "activation": activation,
                "activation_from": why,
                "pooling": poolings[0].pooling_strategy,
                "query_mode": query_mode,
                "idf": idf_source,
                "prune": self.cfg.prune.model_dump(),
                "special_tokens_removed": [vocab[i] for i in special],
            },
        )
        log.info(
            "loaded sparse model %s from %s on %s (vocab=%d, activation=%s from %s, queries via %s)",
            c.model,
            path,
            device,
            dim,
            activation,
            why,
            query_mode,
        )
        return Loaded(model, info)

    # ------------------------------------------------------------------ encoding
    def _maps(self, sm: SparseModel, arr: np.ndarray) -> list[dict[str, float]]:
        arr = np.asarray(arr, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[None, :]
        arr = arr.copy()
        arr[:, sm.special_ids] = 0.0
        out = []
        for row in arr:
            idx = np.flatnonzero(row)  # NaN counts as non-zero: it must reach validation, not vanish
            out.append({sm.vocab[i]: float(row[i]) for i in idx})
        return out

    def _run(self, loaded: Loaded[SparseModel], texts: Sequence[str], task: str) -> list[dict[str, float]]:
        sm = loaded.model
        fn = sm.st.encode_document if task == "document" else sm.st.encode_query
        with loaded.lock:
            emb = fn(
                list(texts),
                batch_size=max(len(texts), 1),
                convert_to_tensor=True,
                convert_to_sparse_tensor=False,
                show_progress_bar=False,
            )
        return self._maps(sm, emb.detach().float().cpu().numpy())

    def encode(self, loaded: Loaded[SparseModel], texts: Sequence[str]) -> list[Vector]:
        """Document maps, pruned with the configured rule (rows with non-finite weights are left for validation)."""
        if not texts:
            return []
        maps = self._run(loaded, texts, "document")
        p = self.cfg.prune
        if p.type == "none":
            return list(maps)  # list(): the maps as a list[Vector] (list is invariant)
        return [prune(m, p.type, p.ratio) if all(np.isfinite(w) for w in m.values()) else m for m in maps]

    def encode_queries(self, loaded: Loaded[SparseModel], texts: Sequence[str]) -> list[Vector]:
        """Query maps the way the model family expects: through the model, or tokenizer + IDF weights."""
        if not texts:
            return []
        sm = loaded.model
        if sm.query_mode == "model" or sm.static_query_route:
            return list(self._run(loaded, texts, "query"))
        return list(self.tokenize_queries(loaded, texts))

    def tokenize_queries(self, loaded: Loaded[SparseModel], texts: Sequence[str]) -> list[dict[str, float]]:
        """SPARSE_TOKENIZE: distinct non-special tokens, each weighted ``idf.get(token, 1.0)``; zero weights dropped."""
        sm = loaded.model
        idf = sm.idf or {}
        special = set(sm.special_ids.tolist())
        with loaded.lock:
            ids = sm.tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=sm.max_seq_length)["input_ids"]
        out = []
        for row in ids:
            m: dict[str, float] = {}
            for i in dict.fromkeys(row):
                if i in special or i >= len(sm.vocab):
                    continue
                tok = sm.vocab[i]
                w = float(idf.get(tok, 1.0))
                if w > 0:
                    m[tok] = w
            out.append(m)
        return out

    def token_lengths(self, loaded: Loaded[SparseModel], texts: Sequence[str]) -> list[int]:
        """Token counts before truncation (with special tokens)."""
        with loaded.lock:
            enc = loaded.model.tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
        return [len(ids) for ids in enc]
