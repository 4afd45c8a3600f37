"""Plain helpers for tests (fixtures live in conftest.py)."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
MINILM = "huggingface/sentence-transformers/all-MiniLM-L6-v2"


def require_plugins(client, *names: str) -> None:
    """Skip on a node without these plugins (GET _cat/plugins): Maven Central has no 3.x ML Commons or
    neural-search, so the 3.x node has k-NN only. Under CI=true a 2.x node must have them (scripts/test.sh
    starts it with --plugins all)."""
    import pytest

    plugins = {p["component"] for p in client.cat.plugins(format="json")}
    missing = [n for n in names if n not in plugins]
    if not missing:
        return
    version = client.info()["version"]["number"]
    msg = (
        f"the test OpenSearch {version} lacks the plugin(s) {', '.join(missing)} (scripts/opensearch-local.sh --plugins all, 2.x)"
    )
    if os.environ.get("CI", "").lower() == "true" and int(version.split(".")[0]) < 3:
        pytest.fail(msg)
    pytest.skip(msg)


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    return path


def cosine(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# In-process collection of PCollection contents (DoFns are pickled, so a plain list.append would
# append to a copy). This class is module-level in an importable module, so it pickles by reference
# and writes to this module's state, which the in-process runner shares.
_COLLECTED: dict[str, list] = {}

import apache_beam as _beam  # noqa: E402


class Collect(_beam.DoFn):
    """A DoFn that stores elements under ``key``; read them with :func:`collected` after the run."""

    def __init__(self, key: str):
        self.key = key

    def process(self, x):
        _COLLECTED.setdefault(self.key, []).append(x)


def collect(key: str):
    return _beam.ParDo(Collect(key))


def collected(key: str) -> list:
    return _COLLECTED.pop(key, [])


_TOPICS = [
    "volcanoes",
    "sourdough bread",
    "binary search",
    "jazz harmony",
    "tidal energy",
    "honeybees",
    "roman aqueducts",
    "photosynthesis",
    "chess openings",
    "glaciers",
    "credit scores",
    "lighthouses",
]


def synthetic_docs(n: int, prefix: str = "s") -> list[dict[str, Any]]:
    """Small, distinct documents for tests that exercise plumbing rather than relevance."""
    return [
        {
            "id": f"{prefix}-{i:04d}",
            "title": f"Note {i} on {_TOPICS[i % len(_TOPICS)]}",
            "body": f"This is note number {i}. It discusses {_TOPICS[i % len(_TOPICS)]} and item {i * 7 % 101}.",
            "topic": _TOPICS[i % len(_TOPICS)],
            "year": 1990 + i % 30,
        }
        for i in range(n)
    ]


_HELD: list = []


def hold_model(cfg) -> Any:
    """Keep a config's loaded models alive for the whole test session, so that repeated in-process
    CLI calls reuse them through apache_beam.utils.shared instead of loading them each time."""
    from neural_ingest.encoders import make_encoder

    loaded = [make_encoder(c).acquire() for c in cfg.encoders]
    _HELD.extend(loaded)
    return loaded


class EncodeGate:
    """Holds a run at a known point, whatever the machine's speed: the first ``open_calls`` dense encode
    calls pass, the next one waits until ``release()`` (after that, every call passes). Tests stage an
    event while the encoder is held (stop the node; start a second run against a held lock). Nothing
    is faked: the model still encodes; the gate only fixes *when*."""

    def __init__(self, monkeypatch: Any, open_calls: int):
        from neural_ingest.encoders.dense import SentenceTransformerEncoder

        self.calls = 0
        self.held = threading.Event()
        self._go = threading.Event()
        original = SentenceTransformerEncoder.encode
        gate = self

        def encode(enc, loaded, texts):
            gate.calls += 1
            if gate.calls > open_calls:
                gate.held.set()
                gate._go.wait(timeout=300)
            return original(enc, loaded, texts)

        monkeypatch.setattr(SentenceTransformerEncoder, "encode", encode)

    def release(self) -> None:
        self._go.set()
