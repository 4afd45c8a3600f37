"""Local dense encoder: a sentence-transformers model producing float32 vectors."""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from neural_ingest.catalogue import verify_loaded
from neural_ingest.config import SentenceTransformersEncoderConfig
from neural_ingest.encoders.base import Encoder, Loaded, ModelInfo, SettingsFromConfig, Tokenized, Vector
from neural_ingest.encoders.device import resolve_device
from neural_ingest.model_resolve import resolve_model_dir

log = logging.getLogger(__name__)


class SentenceTransformerEncoder(SettingsFromConfig, Encoder[Any]):  # a SentenceTransformer, or a FastSentenceModel
    cfg: SentenceTransformersEncoderConfig
    kind = "dense"
    counts_tokens = True

    def __init__(self, cfg: SentenceTransformersEncoderConfig):
        self.cfg = cfg

    def share_key(self) -> str:
        c = self.cfg
        key = f"st:{c.model}:{c.model_path}:{c.device}:{c.normalize}:{c.max_seq_length}"
        backend = getattr(c, "backend", "torch")
        return key if backend == "torch" else f"{key}:{backend}:{c.quantize}"

    def load_model(self) -> Loaded[Any]:
        # Weights come from local disk only; never let a missing file turn into a hub download.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.models import Normalize
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        c = self.cfg
        path = resolve_model_dir(c.model, c.model_path, c.models_dir)
        device = resolve_device(c.device)
        if c.threads:
            import torch

            torch.set_num_threads(c.threads)
        # a SentenceTransformer, or below a FastSentenceModel with the same surface (its dimension is known once loaded)
        model: Any = SentenceTransformer(str(path), device=device, local_files_only=True)
        has_normalize = any(isinstance(m, Normalize) for m in model)
        # A catalogue name must get that model's weights: check them (as loaded, before the config's
        # overrides) before anything is encoded. Similarity only counts when the files declare one.
        declared_similarity = getattr(model, "_similarity_fn_name", None)
        entry = verify_loaded(
            c.model,
            dimension=int(model.get_embedding_dimension()),
            similarity=declared_similarity,
            normalized=has_normalize,
            source=str(path),
        )
        if c.normalize is False and has_normalize:
            # The user wants raw vectors (e.g. for innerproduct on magnitudes): drop the module.
            idx = next(i for i, m in enumerate(model) if isinstance(m, Normalize))
            del model[idx]
            has_normalize = False
        if c.max_seq_length:
            model.max_seq_length = c.max_seq_length
        extra: dict[str, Any] = {"path": str(path), "device": device}
        tokens = None
        if getattr(c, "backend", "torch") == "torch":  # tokenize once per window, encode from tokens (pretokenized.py)
            from neural_ingest.encoders.pretokenized import token_path

            tokens = token_path(model)
        else:  # the same graph on ONNX Runtime / OpenVINO (encoders/fast_backend.py)
            from neural_ingest.encoders.fast_backend import load_fast

            model = load_fast(model, c.backend, c.quantize, c.threads, c.backend_cache_dir, path)
            device = "cpu"
            extra = {"path": str(path), "device": device, "backend": c.backend, "quantize": c.quantize, "graph": model.path}
        info = ModelInfo(
            name=c.model,
            kind="dense",
            dimension=int(model.get_embedding_dimension()),
            similarity=str(declared_similarity or (entry.similarity if entry else None) or "cosine"),
            normalized=bool(has_normalize or c.normalize),
            max_seq_length=int(model.max_seq_length),
            extra=extra,
        )
        log.info("loaded %s from %s on %s (dim=%s)", c.model, path, device, info.dimension)
        return Loaded(model, info, tokens)

    def encode(self, loaded: Loaded[Any], texts: Sequence[str]) -> list[Vector]:
        with loaded.lock:
            arr = loaded.model.encode(
                list(texts),
                batch_size=max(len(texts), 1),
                convert_to_numpy=True,
                normalize_embeddings=bool(self.cfg.normalize),
                show_progress_bar=False,
            )
        return list(np.asarray(arr, dtype=np.float32))

    def tokenize(self, loaded: Loaded[Any], texts: Sequence[str]) -> Tokenized | None:
        path = getattr(loaded, "tokens", None)
        if path is None:
            return None
        with loaded.lock:
            tokenized: Tokenized = path.tokenize(texts)
            return tokenized

    def encode_tokenized(self, loaded: Loaded[Any], tokens: Sequence[object]) -> list[Vector]:
        with loaded.lock:
            arr = loaded.tokens.encode(loaded.model, tokens, bool(self.cfg.normalize))
        return list(np.asarray(arr, dtype=np.float32))

    def token_lengths(self, loaded: Loaded[Any], texts: Sequence[str]) -> list[int]:
        """Token counts after the model's truncation; used for batching and truncation counts."""
        tok = loaded.model.tokenizer
        with loaded.lock:
            enc = tok(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
        return [len(ids) for ids in enc]
