"""The state file of registered model ids, keyed by cluster and model name: a second run reuses them."""
from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from neural_ingest.ml_commons.client import MLCommonsError

DEFAULT_STATE_FILE = ".neural-ingest/models.json"


@dataclass
class RegisteredModel:
    name: str
    model_id: str
    state: str  # "DEPLOYED" | "REGISTERED"
    function_name: str
    version: str
    model_format: str
    source: str  # "url" | "artifact:<path>"
    cluster: str
    registered_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    error: str | None = None


class ModelRegistry:
    """``{cluster: {model name: RegisteredModel}}`` in a JSON file (default ``.neural-ingest/models.json``)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path or os.environ.get("NEURAL_INGEST_MODELS_STATE") or DEFAULT_STATE_FILE)

    def _load(self) -> dict[str, dict[str, dict[str, Any]]]:
        if not self.path.is_file():
            return {}
        try:
            state: dict[str, dict[str, dict[str, Any]]] = json.loads(self.path.read_text())
            return state
        except ValueError as e:
            raise MLCommonsError(f"{self.path} is not valid JSON ({e}): fix or delete it") from None

    def get(self, cluster: str, name: str) -> RegisteredModel | None:
        rec = self._load().get(_cluster_key(cluster), {}).get(name)
        return RegisteredModel(**rec) if rec else None

    def put(self, rec: RegisteredModel) -> None:
        data = self._load()
        data.setdefault(_cluster_key(rec.cluster), {})[rec.name] = asdict(rec)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.path)

    def model_id(self, cluster: str, name: str) -> str | None:
        """The recorded model id for ``name`` on ``cluster`` (what a neural / neural_sparse query needs)."""
        rec = self.get(cluster, name)
        return rec.model_id if rec else None


def _cluster_key(cluster: str) -> str:
    """Hosts differ in spelling (trailing slash, default port); the key is scheme://host:port."""
    u = urlparse(cluster if "://" in cluster else f"http://{cluster}")
    port = u.port or (443 if u.scheme == "https" else 9200)
    return f"{u.scheme}://{u.hostname}:{port}"


# ----------------------------------------------------------------------------- a pipeline's models
