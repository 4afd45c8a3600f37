"""The shapes that flow through the pipeline: documents, and dead letters for records that fail."""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from neural_ingest.metadata import lone_surrogate

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
    # (file, byte offset / line / row) in the source, for duplicates: the last wins. Read by nothing after
    # DropDuplicateIds (left on the kept documents there rather than copying each one to clear it).
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
        """One JSONL line; never raises, whatever the record holds (see :func:`json_safe`)."""
        letter = json_safe(
            {
                "run_id": run_id,
                "stage": self.stage,
                "error_type": self.error_type,
                "message": self.message,
                "doc_id": self.doc_id,
                "status": self.status,
                "attempts": self.attempts,
                "timestamp": self.timestamp,
                "record": self.record,
            }
        )
        try:
            text = json.dumps(letter, ensure_ascii=False, allow_nan=False)
        except Exception as e:  # noqa: BLE001 - json_safe's output always dumps; this is the last guard
            letter["record"] = f"<unserialisable record: {type(e).__name__}>"
            text = json.dumps(letter, ensure_ascii=False, allow_nan=False, default=str)
        if lone_surrogate(text):  # a lone surrogate, or a byte kept by surrogateescape: a \udcff escape, exact on json.loads
            text = json.dumps(letter, ensure_ascii=True, allow_nan=False)
        # Line breaks to str.splitlines (and old JavaScript), not to JSON: escaped, so one letter stays one line.
        return text.translate(_LINE_BREAKS)


def content_id(text: str, metadata: dict[str, Any] | None = None) -> str:
    """Deterministic id for records without one, so a rerun overwrites instead of duplicating."""
    h = hashlib.sha256(text.encode("utf-8"))
    if metadata:
        h.update(json.dumps(metadata, sort_keys=True, default=str).encode("utf-8"))
    return h.hexdigest()[:32]


_MAX_DEPTH = 100
_LINE_BREAKS = {c: f"\\u{c:04x}" for c in (0x85, 0x2028, 0x2029)}
_FLOATS = {float("inf"): "Infinity", float("-inf"): "-Infinity"}


def json_safe(value: Any, _depth: int = 0, _seen: frozenset[int] = frozenset()) -> Any:
    """A record as plain JSON for dead letters; total: never raises, whatever the value.

    Bytes become text with ``\\xNN`` escapes, numpy values lists / numbers, dates ISO 8601, NaN and
    infinities the strings ``NaN`` / ``Infinity`` (strict JSON has no such number), sets lists, a cycle or
    nesting past 100 levels a marker string, anything else its ``str``. Strings are kept as they are, lone
    surrogates included: :meth:`DeadLetter.to_json` escapes those.
    """
    try:
        return _json_safe(value, _depth, _seen)
    except Exception as e:  # noqa: BLE001 - a dead letter must always be written
        return f"<unserialisable {type(value).__name__}: {type(e).__name__}>"


def _json_safe(value: Any, depth: int, seen: frozenset[int]) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 14_000:
        return f"<int of {value.bit_length()} bits>"  # past Python's 4300-digit str() limit
    if value is None or isinstance(value, (bool, int, str)):
        return value if type(value) in (bool, int, str) or value is None else _plain(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else _FLOATS.get(value, "NaN")
    if depth >= _MAX_DEPTH:
        return "<nested too deep>"
    if isinstance(value, (dict, list, tuple, set, frozenset, Document)):
        if id(value) in seen:
            return "<cycle>"
        seen = seen | {id(value)}
    if isinstance(value, Document):
        parts = {"id": value.id, "text": value.text, "metadata": value.metadata, "source": value.source}
        return {k: json_safe(v, depth + 1, seen) for k, v in parts.items()}
    if isinstance(value, dict):
        return {_safe_key(k): json_safe(v, depth + 1, seen) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1, seen) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [json_safe(v, depth + 1, seen) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True, ensure_ascii=True, default=str))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars
        return json_safe(value.tolist(), depth + 1, seen)
    return _text(value)


def _plain(value: Any) -> Any:
    """A subclass of bool / int / str (an enum, numpy.str_) as the plain value."""
    for t in (bool, int, str):
        if isinstance(value, t):
            return t(value)
    return _text(value)


def _safe_key(key: Any) -> str:
    if isinstance(key, str):
        return str(key)
    out = json_safe(key)
    return out if isinstance(out, str) else json.dumps(out, ensure_ascii=True, sort_keys=True, default=str)


def _text(value: Any) -> str:
    for show in (str, repr):
        with contextlib.suppress(Exception):  # an object whose __str__ raises still gets a dead letter
            out = show(value)
            if isinstance(out, str):
                return out
    return f"<{type(value).__name__}>"
