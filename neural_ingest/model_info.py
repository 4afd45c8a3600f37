"""What a loaded model is, for the index mapping and query-time encoding; no Beam, no torch, so the config,
the sinks and the search path can import it cheaply."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

# A dense vector is a float32 array (or a list of floats); a sparse vector is {token: weight}. ``Vector`` stays
# ``Any`` until the encode paths are typed against the union (mypy: 28 call sites to narrow; the next step).
DenseVector: TypeAlias = "npt.NDArray[np.float32] | list[float]"
SparseVector: TypeAlias = dict[str, float]
Vector: TypeAlias = Any


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
