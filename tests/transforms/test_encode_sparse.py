"""EncodeBatchFn with sparse maps: absent (zero, subnormal) weights are dropped, rejected ones dead-lettered."""
from __future__ import annotations

import apache_beam as beam

from neural_ingest.encoders.base import Encoder, Loaded, ModelInfo
from neural_ingest.records import Document
from neural_ingest.transforms.encode import EncodeBatchFn

MAPS = {
    "zero": {"a": 1.0, "b": 0.0},
    "subnormal": {"a": 1.0, "b": 1e-40},
    "nan": {"a": 1.0, "b": float("nan")},
    "negative": {"a": 1.0, "b": -0.5},
    "inf": {"a": float("inf")},
    "fine": {"a": 1.0, "##ing": 0.25, ".": 0.5},
}


class FakeSparse(Encoder):
    kind = "sparse"

    def share_key(self) -> str:
        return "fake-sparse-weights"

    def load_model(self) -> Loaded:
        return Loaded(None, ModelInfo(name="fake", kind="sparse"))

    def encode(self, loaded, texts):
        return [dict(MAPS[t]) for t in texts]

    def batch_size(self) -> int:
        return 8


def test_absent_weights_dropped_and_invalid_ones_dead_lettered():
    fn = EncodeBatchFn(FakeSparse(), "sparse_embedding")
    fn.setup()
    out = list(fn.process([Document(id=k, text=k) for k in MAPS]))
    docs = {o.id: o for o in out if isinstance(o, Document)}
    dead = {o.value.doc_id: o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput)}
    assert set(docs) == {"zero", "subnormal", "fine"}
    assert docs["zero"].embeddings["sparse_embedding"] == {"a": 1.0}
    assert docs["subnormal"].embeddings["sparse_embedding"] == {"a": 1.0}
    assert docs["fine"].embeddings["sparse_embedding"] == MAPS["fine"]
    assert set(dead) == {"nan", "negative", "inf"}
    assert all(d.error_type == "invalid_vector" for d in dead.values())
    assert "not finite" in dead["nan"].message and "not positive" in dead["negative"].message
