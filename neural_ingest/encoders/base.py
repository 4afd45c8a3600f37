"""The one encoder interface every model kind implements, in the spirit of Beam's ModelHandler.

An ``Encoder`` is a small picklable description (built from config) that knows how to load its
model once per worker process, how to encode a batch of texts with it, and how big a batch should
be. Dense, sparse and remote encoders are implementations; the DoFns never care which.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from apache_beam.utils import shared

from neural_ingest.errors import NeuralIngestError
from neural_ingest.model_info import SPACE_TYPES, ModelInfo, Vector

if TYPE_CHECKING:
    from neural_ingest.config import BatchingConfig

M = TypeVar("M")

__all__ = [  # ModelInfo, SPACE_TYPES and Vector live in neural_ingest.model_info (no Beam); re-exported from here
    "MODEL_LOAD_LOG_ENV",
    "SPACE_TYPES",
    "EncodeError",
    "Encoder",
    "Loaded",
    "ModelInfo",
    "SettingsFromConfig",
    "Tokenized",
    "Vector",
    "acquire_shared",
    "vector_problem",
]

class EncodeError(NeuralIngestError, RuntimeError):
    """A batch (or one text) could not be encoded; the message says why, for the dead letter.

    ``reason`` (default: the class name) names the dead letter's error type and the
    ``failed.encode.<reason>`` counter; ``status`` is an HTTP status where a service said no;
    ``attempts`` is how many times it was tried.
    """

    def __init__(self, message: str = "", *, reason: str | None = None, status: int | None = None, attempts: int = 1):
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.attempts = attempts


class Loaded(Generic[M]):
    """A loaded model plus a lock: HF fast tokenizers are not safe to call from several threads."""

    def __init__(self, model: M, info: ModelInfo, tokens: Any = None):
        self.model = model
        self.info = info
        self.lock = threading.Lock()
        self.tokens = tokens  # the encoder's own way to tokenize once and encode from tokens (None: from texts)


@dataclass
class Tokenized:
    """Texts as the model reads them, tokenized once: token counts after the model's truncation (for
    length-sorted batching), which texts lost tokens to it (the truncation counts), and each text's
    tokens for ``Encoder.encode_tokenized`` (None: the encoder encodes from texts only)."""

    lengths: list[int]
    truncated: list[bool]
    tokens: list[Any] | None = None


class _ModelSettings(Protocol):
    @property
    def batch_size(self) -> int: ...
    @property
    def batching(self) -> BatchingConfig: ...
    @property
    def max_seq_length(self) -> int | None: ...


class SettingsFromConfig:
    """What the transforms ask of a local model's encoder, read from its config (``batch_size``, ``batching``,
    ``max_seq_length``): mixed in before Encoder by the dense and sparse encoders."""

    cfg: _ModelSettings

    def batch_size(self) -> int:
        return self.cfg.batch_size

    def batching(self) -> BatchingConfig | None:
        return self.cfg.batching

    def max_seq_length(self) -> int | None:
        return self.cfg.max_seq_length


class Encoder(ABC, Generic[M]):
    """Load a model, encode batches of text, say how big a batch should be.

    What the transforms need from an encoder is here, as Beam's ModelHandler carries ``batch_elements_kwargs``:
    ``batch_size`` and ``batching`` (how documents are grouped into encode calls), ``max_seq_length`` (the
    configured truncation, known before the model loads), ``counts_tokens`` / ``token_lengths`` (a local model
    that can count a text's tokens: length-sorted batches and truncation counts), ``tokenize`` /
    ``encode_tokenized`` (one tokenization per text)."""

    kind: str = "dense"
    counts_tokens: bool = False  # True: token_lengths works (a local model with its own tokenizer)

    @abstractmethod
    def share_key(self) -> str:
        """Identity of the loaded model: equal keys share one model per process."""

    @abstractmethod
    def load_model(self) -> Loaded[M]:
        """Load the model (expensive; called once per worker process)."""

    @abstractmethod
    def encode(self, loaded: Loaded[M], texts: Sequence[str]) -> list[Vector]:
        """Encode a batch of document texts, one vector per text, in order."""

    def encode_queries(self, loaded: Loaded[M], texts: Sequence[str]) -> list[Vector]:
        """Encode search queries; models with an asymmetric query side override this."""
        return self.encode(loaded, texts)

    def tokenize(self, loaded: Loaded[M], texts: Sequence[str]) -> Tokenized | None:
        """The texts tokenized at the model's own truncation, once, for both batching and encoding; None
        where the encoder tokenizes only inside ``encode`` (remote services, fast backends, sparse models)."""
        return None

    def encode_tokenized(self, loaded: Loaded[M], tokens: Sequence[Any]) -> list[Vector]:
        """``encode`` of the texts behind ``tokens`` (items of ``tokenize(...).tokens``): the same vectors."""
        raise NotImplementedError(f"{type(self).__name__} encodes from texts only")

    @abstractmethod
    def batch_size(self) -> int:
        """Documents per encode call."""

    def batching(self) -> BatchingConfig | None:
        """How documents are grouped into encode calls (the config's ``batching`` block); None: fixed batches of
        ``batch_size`` in arrival order (remote services, which batch and split on their own)."""
        return None

    def max_seq_length(self) -> int | None:
        """The configured truncation in tokens (None: the model's own, known once it is loaded)."""
        return None

    def token_lengths(self, loaded: Loaded[M], texts: Sequence[str]) -> list[int]:
        """Token counts after the model's truncation (only where ``counts_tokens``)."""
        raise NotImplementedError(f"{type(self).__name__} does not count tokens")

    def acquire(self) -> Loaded[M]:
        """The process-wide shared model for this encoder, loading it on first use."""
        loaded: Loaded[M] = acquire_shared(self.share_key(), self.load_model)
        return loaded


_HANDLES: dict[str, shared.Shared] = {}
_HANDLES_LOCK = threading.Lock()


def acquire_shared(key: str, loader: Any) -> Any:
    """One ``apache_beam.utils.shared`` handle per model identity, so the driver's pre-flight load
    and every DoFn thread of an in-process runner reuse one model instead of loading it again."""
    with _HANDLES_LOCK:
        handle = _HANDLES.setdefault(key, shared.Shared())
    return handle.acquire(lambda: _load_and_record(key, loader), tag=key)


MODEL_LOAD_LOG_ENV = "NEURAL_INGEST_MODEL_LOAD_LOG"


def _load_and_record(key: str, loader: Any) -> Any:
    """Run the loader; with $NEURAL_INGEST_MODEL_LOAD_LOG set, append {pid, key, seconds} to that file
    (how tests and operators see that each worker process loads a model once)."""
    import json
    import os
    import time

    t0 = time.monotonic()
    loaded = loader()
    path = os.environ.get(MODEL_LOAD_LOG_ENV)
    if path:
        line = json.dumps({"pid": os.getpid(), "key": key, "seconds": round(time.monotonic() - t0, 3)})
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    return loaded


def vector_problem(vec: Vector, info: ModelInfo) -> str | None:
    """Why a vector must not be indexed (wrong size, NaN, bad sparse weight), or None if it is fine."""
    import numpy as np

    if info.kind == "sparse":
        if not isinstance(vec, dict):
            return f"expected a token->weight map, got {type(vec).__name__}"
        from neural_ingest.encoders.sparse_weights import weight_problem

        for tok, w in vec.items():
            problem = weight_problem(tok, w)
            if problem:
                return problem
        return None
    arr = np.asarray(vec)
    if arr.ndim != 1:
        return f"expected a 1-D vector, got shape {arr.shape}"
    if info.dimension is not None and arr.shape[0] != info.dimension:
        return f"vector has {arr.shape[0]} dimensions, the model/index expects {info.dimension}"
    if not np.all(np.isfinite(arr)):
        return "vector contains NaN or infinite values"
    return None
