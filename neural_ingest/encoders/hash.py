"""Hash encoder: benchmark and test only. No model, deterministic unit vectors from a hash of each text.

It exists to measure the pipeline's own per-document cost (benchmarks/overhead.py, the growth runs):
an encoder that costs almost nothing, so what remains is Beam, records, JSON and the sink. Its vectors
carry no meaning (no two related texts are near); never use it for a real index.

Contract (stable, so benchmarks and tests can recompute a vector outside the pipeline):
    seed = little-endian uint64 of blake2b(text as UTF-8, surrogates passed through, digest_size=8)
    x_j  = splitmix64(seed + (j + 1) * 0x9E3779B97F4A7C15)   for j in 0..dimension-1 (uint64, wrapping)
    v_j  = (x_j >> 40) / 2**23 - 1                             (24 random bits -> [-1, 1))
    vector = float32(v / ||v||)
Equal texts give equal vectors in every process and on every platform; the whole batch is one numpy
computation (a few microseconds a document at dimension 384).
"""
from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b

import numpy as np

from neural_ingest.config import BatchingConfig, HashEncoderConfig
from neural_ingest.encoders.base import Encoder, Loaded, ModelInfo, Vector

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def text_seeds(texts: Sequence[str]) -> np.ndarray:
    """One uint64 per text: the first 8 bytes (little-endian) of its blake2b digest."""
    raw = b"".join(blake2b(t.encode("utf-8", "surrogatepass"), digest_size=8).digest() for t in texts)
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64)


def hash_vectors(texts: Sequence[str], dimension: int) -> np.ndarray:
    """(len(texts), dimension) float32 unit vectors, the module's contract."""
    seeds = text_seeds(texts)
    steps = (np.arange(1, dimension + 1, dtype=np.uint64) * _GOLDEN)[None, :]
    with np.errstate(over="ignore"):
        z = seeds[:, None] + steps
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z ^= z >> np.uint64(31)
    v = (z >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / (1 << 23)) - np.float32(1.0)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    out: np.ndarray = (v / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)
    return out


class HashEncoder(Encoder[None]):
    """The ``hash`` encoder type (config: ``{type: hash, dimension: 384}``); see the module docstring."""

    kind = "dense"

    def __init__(self, cfg: HashEncoderConfig):
        self.cfg = cfg

    def share_key(self) -> str:
        return f"hash:{self.cfg.dimension}"

    def batch_size(self) -> int:
        return self.cfg.batch_size

    def batching(self) -> BatchingConfig:
        return self.cfg.batching

    def load_model(self) -> Loaded[None]:
        d = self.cfg.dimension
        info = ModelInfo(
            name=f"hash-{d}", kind="dense", dimension=d, similarity="cosine", normalized=True, extra={"benchmark_only": True}
        )
        return Loaded(None, info)

    def encode(self, loaded: Loaded[None], texts: Sequence[str]) -> list[Vector]:
        return list(hash_vectors(texts, self.cfg.dimension))
