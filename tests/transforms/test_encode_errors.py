"""EncodeBatchFn with encoders that say why a text failed: reason, HTTP status and attempts reach the
dead letter; other exceptions keep their class name; the rest of the batch is encoded."""
from __future__ import annotations

import apache_beam as beam
import numpy as np

from neural_ingest.encoders.base import EncodeError, Encoder, Loaded, ModelInfo
from neural_ingest.records import Document
from neural_ingest.transforms.encode import EncodeBatchFn


class Flaky(Encoder):
    """Fails texts starting with "bad" with an EncodeError, "boom" with a UnicodeError (which has a
    `reason` attribute of its own that must not become the counter name)."""

    def share_key(self) -> str:
        return "fake-flaky-errors"

    def load_model(self) -> Loaded:
        return Loaded(None, ModelInfo(name="fake", kind="dense", dimension=2))

    def encode(self, loaded, texts):
        for t in texts:
            if t.startswith("bad"):
                raise EncodeError(f"service said no to {t}", reason="http_400", status=400, attempts=3)
            if t.startswith("boom"):
                raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        return [np.ones(2, dtype=np.float32) for _ in texts]

    def batch_size(self) -> int:
        return 8


def test_encode_error_reason_status_attempts_reach_the_dead_letter():
    fn = EncodeBatchFn(Flaky(), "embedding")
    fn.setup()
    out = list(fn.process([Document(id=t, text=t) for t in ("ok1", "bad1", "ok2", "boom")]))
    docs = [o.id for o in out if isinstance(o, Document)]
    dead = {o.value.doc_id: o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput)}
    assert docs == ["ok1", "ok2"]
    assert dead["bad1"].error_type == "http_400" and dead["bad1"].status == 400 and dead["bad1"].attempts == 3
    assert "service said no to bad1" in dead["bad1"].message
    assert dead["boom"].error_type == "UnicodeDecodeError" and dead["boom"].status is None
