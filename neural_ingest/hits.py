"""A search result. In a module of its own (outside the sinks package, whose __init__ imports sinks.base) so
that hybrid fusion (hybrid.py) and the sinks' default hybrid search (sinks/base.py) import it, not each other."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Hit:
    id: str
    score: float
    source: dict[str, Any] = field(default_factory=dict)
    # Chunked indexes: the document's best chunk {"text", "start", "end", "index", "score"}.
    passage: dict[str, Any] | None = None
