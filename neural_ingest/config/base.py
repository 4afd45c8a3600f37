"""What every config model shares: strict parsing (unknown fields are errors) and ConfigError."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from neural_ingest.errors import NeuralIngestError


class ConfigError(NeuralIngestError, ValueError):
    """A config problem, phrased as the field at fault and how to fix it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
