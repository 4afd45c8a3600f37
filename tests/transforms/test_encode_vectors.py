"""EncodeBatchFn's batch check of dense vectors: one numpy check for a good batch; a batch with a bad vector
falls back to the per-vector checks, so only that document is a dead letter, with vector_problem's message."""
from __future__ import annotations

import apache_beam as beam
import numpy as np

from neural_ingest.encoders.base import Encoder, Loaded, ModelInfo
from neural_ingest.records import Document
from neural_ingest.transforms.encode import EncodeBatchFn, dense_batch_valid

INFO = ModelInfo(name="fake", kind="dense", dimension=3)


class Odd(Encoder):
    """nan -> a NaN vector, short -> 2 dimensions, list -> a Python list (valid), else ones."""

    def share_key(self) -> str:
        return "fake-odd-vectors"

    def load_model(self) -> Loaded:
        return Loaded(None, INFO)

    def encode(self, loaded, texts):
        out = []
        for t in texts:
            if t == "nan":
                out.append(np.array([1.0, np.nan, 0.0], dtype=np.float32))
            elif t == "short":
                out.append(np.ones(2, dtype=np.float32))
            elif t == "list":
                out.append([0.0, 1.0, 0.0])
            else:
                out.append(np.ones(3, dtype=np.float32))
        return out

    def batch_size(self) -> int:
        return 8


def _run(texts):
    fn = EncodeBatchFn(Odd(), "embedding")
    fn.setup()
    docs = [Document(id=t, text=t, metadata={"k": 1}) for t in texts]
    out = list(fn.process(docs))
    return (
        docs,
        [o for o in out if isinstance(o, Document)],
        {o.value.doc_id: o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput)},
    )


def test_a_good_batch_is_encoded_and_the_inputs_are_not_changed():
    docs, encoded, dead = _run(["a", "b"])
    assert not dead and [d.id for d in encoded] == ["a", "b"]
    assert all(d.embeddings == {} for d in docs)  # inputs untouched: copies carry the vectors
    assert encoded[0].metadata == {"k": 1} and encoded[0].embeddings["embedding"].tolist() == [1.0, 1.0, 1.0]


def test_bad_vectors_are_dead_letters_one_by_one_the_rest_encoded():
    _, encoded, dead = _run(["a", "nan", "short", "list", "b"])
    assert [d.id for d in encoded] == ["a", "list", "b"]
    assert {k: (v.error_type, v.message) for k, v in dead.items()} == {
        "nan": ("invalid_vector", "vector contains NaN or infinite values"),
        "short": ("invalid_vector", "vector has 2 dimensions, the model/index expects 3"),
    }


def test_batch_check_agrees_with_the_per_vector_rule():
    ones = np.ones(3, dtype=np.float32)
    assert dense_batch_valid([ones, ones], INFO)
    assert not dense_batch_valid([ones, np.array([np.inf, 0, 0], dtype=np.float32)], INFO)
    assert not dense_batch_valid([ones, np.ones(4, dtype=np.float32)], INFO)
    assert not dense_batch_valid([ones, [1.0, 1.0, 1.0]], INFO)  # not an array: checked one by one
    assert not dense_batch_valid([{"a": 1.0}], ModelInfo(name="s", kind="sparse"))


def test_dense_batch_check_takes_one_array_of_the_batch():
    """An encoder's (n, dim) array is checked as it is (no stacking), with the same verdicts."""
    ones = np.ones((2, 3), dtype=np.float32)
    assert dense_batch_valid(ones, INFO)
    assert not dense_batch_valid(np.array([[1, 0, 0], [np.nan, 0, 0]], dtype=np.float32), INFO)
    assert not dense_batch_valid(np.ones((2, 4), dtype=np.float32), INFO)
    assert not dense_batch_valid(np.ones((0, 3), dtype=np.float32), INFO)
