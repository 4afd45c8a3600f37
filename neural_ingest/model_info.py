"""What a loaded model is, for the index mapping and query-time encoding; no Beam, no torch, so the config,
the sinks and the search path can import it cheaply."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

# What an encoder returns for one text: a dense vector is a float32 array (local models) or a list of floats (a
# remote service's JSON, a stored vector read back); a sparse vector is {token: weight}. Code that needs one kind
# narrows with ``isinstance(v, Mapping)`` (sparse) or takes the kind from ``ModelInfo.kind``.
DenseVector: TypeAlias = "npt.NDArray[np.float32] | Sequence[float]"
SparseVector: TypeAlias = Mapping[str, float]
Vector: TypeAlias = "DenseVector | SparseVector"


def as_dense(vec: Vector) -> DenseVector:
    """``vec``, which a dense encoder returned, as a DenseVector; TypeError for a sparse map."""
    if isinstance(vec, Mapping):
        raise TypeError("a sparse {token: weight} map where a dense vector was expected: use a dense encoder")
    return vec


def as_sparse(vec: Vector) -> SparseVector:
    """``vec``, which a sparse encoder returned, as a SparseVector; TypeError for a dense vector."""
    if not isinstance(vec, Mapping):
        raise TypeError("a dense vector where a sparse {token: weight} map was expected: use a sparse encoder")
    return vec


@dataclass(frozen=True)
class ModelInfo:
    """What the index mapping and query-time encoding need to know about a loaded model."""

    name: str
    kind: str  # "dense" | "sparse"
    dimension: int | None = None
    similarity: str | None = None  # "cosine" | "dot" | "euclidean"
    normalized: bool | None = None
    max_seq_length: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def space_type(self) -> str | None:
        """k-NN space type matching the model's similarity function."""
        return SPACE_TYPES.get(self.similarity or "")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["space_type"] = self.space_type
        return d


SPACE_TYPES = {"cosine": "cosinesimil", "dot": "innerproduct", "euclidean": "l2"}
