"""The shapes that flow through the pipeline: documents, and dead letters for records that fail."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

# Pipeline stages, as named in dead letters and in the summary.
READ, PREPARE, ENCODE, INDEX = "read", "prepare", "encode", "index"


@dataclass
class Document:
    """One source record on its way to the index."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    source: Any = None  # the original record, kept for dead letters
    embeddings: dict[str, Any] = field(default_factory=dict)  # field -> vector / sparse map
    # With chunking on: [{"text", "start", "end", "index"}, ...] (neural_ingest.chunking), and each
    # embeddings[field] is then a list with one vector / sparse map per chunk, in chunk order.
    chunks: list[dict[str, Any]] | None = None
    # (file, byte offset / line / row) in the source, while duplicates are resolved: the last wins.
    position: tuple[str, int] | None = None


@dataclass
class DeadLetter:
    """A record that could not go on, with enough context to fix and replay it."""

    stage: str
    error_type: str
    message: str
    record: Any
    doc_id: str | None = None
    status: int | None = None
    attempts: int = 1
    timestamp: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat())

    def to_json(self, run_id: str) -> str:
        return json.dumps(
            {
                "run_id": run_id,
                "stage": self.stage,
                "error_type": self.error_type,
                "message": self.message,
                "doc_id": self.doc_id,
                "status": self.status,
                "attempts": self.attempts,
                "timestamp": self.timestamp,
                "record": json_safe(self.record),
            },
            ensure_ascii=False,
        )


def content_id(text: str, metadata: dict[str, Any] | None = None) -> str:
    """Deterministic id for records without one, so a rerun overwrites instead of duplicating."""
    h = hashlib.sha256(text.encode("utf-8"))
    if metadata:
        h.update(json.dumps(metadata, sort_keys=True, default=str).encode("utf-8"))
    return h.hexdigest()[:32]


def json_safe(value: Any) -> Any:
    """Make a record JSON-serialisable for dead letters (bytes become escaped text, numpy lists)."""
    if isinstance(value, Document):
        return {"id": value.id, "text": value.text, "metadata": json_safe(value.metadata), "source": json_safe(value.source)}
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
