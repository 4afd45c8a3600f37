"""The one per-document failure protocol: the batch, then each document alone; one reason rule on every encode
path (plain and chunked), so a chunked document that fails with a UnicodeDecodeError is counted as
``failed.encode.UnicodeDecodeError``, not by the exception's ``reason`` attribute ("invalid start byte")."""
from __future__ import annotations

import apache_beam as beam
import numpy as np
import pytest

from neural_ingest.encoders.base import EncodeError, Encoder, Loaded, ModelInfo
from neural_ingest.records import Document
from neural_ingest.transforms.encode import EncodeBatchFn
from neural_ingest.transforms.isolate import Failure, failure_reason, isolated

INFO = ModelInfo(name="fake", kind="dense", dimension=2)
BAD = b"\xff".decode("latin-1")  # a text the fake model "cannot decode"


class Fragile(Encoder):
    """Fails any call whose texts include BAD, with a UnicodeDecodeError; counts its calls."""

    calls = 0

    def share_key(self) -> str:
        return "fake-fragile"

    def load_model(self) -> Loaded:
        return Loaded(None, INFO)

    def encode(self, loaded, texts):
        Fragile.calls += 1
        if any(BAD in t for t in texts):
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        return [np.ones(2, dtype=np.float32) for _ in texts]

    def batch_size(self) -> int:
        return 4


def test_failure_reason_is_the_type_or_the_encode_errors_own():
    assert failure_reason(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")) == ("UnicodeDecodeError", None, 1)
    assert failure_reason(ValueError("x")) == ("ValueError", None, 1)
    assert failure_reason(EncodeError("throttled", reason="http_429", status=429, attempts=5)) == ("http_429", 429, 5)


def test_isolated_retries_each_item_alone_and_reports_the_one_that_fails():
    def encode(items):
        if 2 in items:
            raise ValueError(f"cannot encode {list(items)}")
        return [i * 10 for i in items]

    out = list(isolated([1, 2, 3], encode))
    assert out[0] == ([1], [10]) and out[2] == ([3], [30])
    assert isinstance(out[1], Failure) and out[1].item == 2
    assert out[1].dead_letter()[0] == "ValueError" and "cannot encode [2]" in out[1].dead_letter()[1]
    assert list(isolated([1, 3], encode)) == [([1, 3], [10, 30])]  # a good batch: one call, no retries


@pytest.mark.parametrize("chunked", [False, True])
def test_both_encode_paths_dead_letter_the_same_reason(chunked):
    fn = EncodeBatchFn(Fragile(), "embedding")
    fn.setup()
    texts = ["ok one", f"bad {BAD}", "ok two"]
    def chunks(text):
        return [{"text": w, "start": 0, "end": len(w), "index": i} for i, w in enumerate(text.split())] if chunked else None

    docs = [Document(id=str(i), text=t, chunks=chunks(t)) for i, t in enumerate(texts)]
    out = list(fn.process(docs))
    dead = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput)]
    encoded = [o for o in out if isinstance(o, Document)]
    assert [d.doc_id for d in dead] == ["1"] and dead[0].error_type == "UnicodeDecodeError"
    assert [d.id for d in encoded] == ["0", "2"]
