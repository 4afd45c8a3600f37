"""Length-sorted, token-budget batching: every document once and in arrival order, encode calls bounded
by count and padded tokens and sorted within windows, failures isolated; the real model's token counts;
fixed mode keeps arrival-order batches."""
from __future__ import annotations

import random
from typing import ClassVar

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that
from support import MINILM

from neural_ingest.config import BatchingConfig, SentenceTransformersEncoderConfig
from neural_ingest.encoders.base import Encoder, Loaded, ModelInfo
from neural_ingest.encoders.dense import SentenceTransformerEncoder
from neural_ingest.records import Document
from neural_ingest.transforms.batching import EncodeWindowFn, batching_for, cut_batches, plan_for


def docs(n: int, seed: int = 0) -> list[Document]:
    rnd = random.Random(seed)
    return [Document(id=f"d{i:03d}", text=" ".join(["word"] * rnd.randint(1, 300))) for i in range(n)]


def test_cut_batches_sorts_and_bounds_count_and_tokens():
    items = list(range(10))
    lengths = [5, 100, 7, 100, 3, 50, 50, 9, 1, 60]
    batches = cut_batches(items, lengths, batch_size=3, max_tokens=None)
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    flat = [i for b in batches for i in b]
    assert sorted(flat) == items
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    # padded tokens (count x longest) at most 120: a 100-token text travels alone, 50+50 together
    batches = cut_batches(items, lengths, batch_size=8, max_tokens=120)
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 120
    assert sorted(i for b in batches for i in b) == items


def test_cut_batches_counts_chunks_as_units():
    class D:
        def __init__(self, n):
            self.chunks = [{"text": "x" * 10}] * n

    items = [D(3), D(3), D(2), D(1)]
    batches = cut_batches(items, [10, 10, 10, 10], batch_size=4, max_tokens=None)
    assert [sum(len(d.chunks) for d in b) for b in batches] == [3, 3, 3]


class Recorder(Encoder):
    """Records every encode call's texts; fails texts starting with "bad"."""

    calls: ClassVar[list] = []

    def __init__(self, batch: int = 8, window: int = 40, length: str = "chars"):
        self._batching = BatchingConfig(window=window, length=length)
        self._batch = batch

    def batching(self) -> BatchingConfig:
        return self._batching

    def share_key(self) -> str:
        return "fake-recorder"

    def load_model(self) -> Loaded:
        return Loaded(None, ModelInfo(name="fake", kind="dense", dimension=2))

    def encode(self, loaded, texts):
        Recorder.calls.append(list(texts))
        if any(t.startswith("bad") for t in texts):
            raise ValueError("bad text")
        return [np.full(2, len(t), dtype=np.float32) for t in texts]

    def batch_size(self) -> int:
        return self._batch


def test_window_is_encoded_in_sorted_batches_and_leaves_in_arrival_order():
    Recorder.calls = []
    data = docs(100)
    data[7] = Document(id="bad-7", text="bad " * 50)
    _batch, fn = batching_for(Recorder(batch=8, window=40), "embedding", 3600)
    assert isinstance(fn, EncodeWindowFn)
    fn.setup()
    outs = list(fn.process(data[:40]))
    encoded = [o for o in outs if isinstance(o, Document)]
    dead = [o.value for o in outs if isinstance(o, beam.pvalue.TaggedOutput)]
    assert [d.id for d in encoded] == [d.id for d in data[:40] if d.id != "bad-7"]  # arrival order
    assert [d.doc_id for d in dead] == ["bad-7"]
    assert all(float(d.embeddings["embedding"][0]) == len(d.text) for d in encoded)  # each got its own vector
    first_calls = [c for c in Recorder.calls if len(c) > 1]
    assert all(len(c) <= 8 for c in Recorder.calls)
    for c in first_calls:
        assert [len(t) for t in c] == sorted((len(t) for t in c), reverse=True)


def test_windows_in_a_pipeline_keep_every_document_once():
    data = docs(100)

    def check(out):
        assert [d.id for d in out] == [d.id for d in data] or sorted(d.id for d in out) == [d.id for d in data]

    with beam.Pipeline() as p:
        batch, fn = batching_for(Recorder(batch=8, window=40), "embedding", 3600)
        out = p | beam.Create(data) | batch | beam.ParDo(fn).with_outputs("dead_letter", main="documents")
        assert_that(out.documents, check)


def test_sorted_batches_pad_far_less_than_arrival_order():
    data = docs(256, seed=3)
    length = [len(d.text) for d in data]
    fixed = sum(max(length[i : i + 16]) * len(length[i : i + 16]) for i in range(0, len(length), 16))
    batches = cut_batches(list(range(len(data))), length, batch_size=16, max_tokens=None)
    padded = sum(max(length[i] for i in b) * len(b) for b in batches)
    assert padded < 0.7 * fixed


def test_fixed_mode_keeps_batch_elements():
    from neural_ingest.transforms.encode import EncodeBatchFn

    enc = SentenceTransformerEncoder(
        SentenceTransformersEncoderConfig(model=MINILM, device="cpu", batch_size=8, batching={"mode": "fixed"})
    )
    batch, fn = batching_for(enc, "embedding", 3600)
    assert type(fn) is EncodeBatchFn
    with beam.Pipeline() as p:
        out = p | beam.Create(docs(20)) | batch | beam.Map(len)
        assert_that(out, lambda sizes: sorted(sizes) == [4, 8, 8] or pytest.fail(f"sizes {sizes}"))


def test_plan_from_config_defaults_to_sorted_token_counts():
    enc = SentenceTransformerEncoder(SentenceTransformersEncoderConfig(model=MINILM, device="cpu", batch_size=16))
    plan = plan_for(enc)
    assert (plan.mode, plan.length, plan.batch_size, plan.window_docs) == ("sorted", "tokens", 16, 512)
    enc = SentenceTransformerEncoder(
        SentenceTransformersEncoderConfig(model=MINILM, device="cpu", batching={"mode": "fixed"})
    )
    assert plan_for(enc).mode == "fixed"


def test_token_counts_come_from_the_models_tokenizer():
    enc = SentenceTransformerEncoder(SentenceTransformersEncoderConfig(model=MINILM, device="cpu"))
    fn = EncodeWindowFn(enc, "embedding", 3600, plan_for(enc))
    fn.setup()
    data = [Document(id="a", text="hello world"), Document(id="b", text="word " * 1000)]
    lengths = fn._lengths(data)
    assert lengths[0] == 4  # [CLS] hello world [SEP]
    assert lengths[1] == fn._loaded.info.max_seq_length  # truncated at the model's maximum


def test_truncate_mode_counts_come_from_the_sort_and_match_chunkfns():
    """With ``truncation_limit`` the window counts the documents over the model's maximum from the token
    counts it sorts by (no ChunkFn tokenizing each document again): the same counts ChunkFn gives, at the
    boundary too (256 tokens is not truncated, 257 is)."""
    from apache_beam.metrics.metric import MetricsFilter

    from neural_ingest.chunking import ChunkPlan, ChunkTokenizer
    from neural_ingest.transforms.chunk import ChunkDocuments
    from neural_ingest.transforms.encode import EncodeDocuments

    enc = SentenceTransformerEncoder(SentenceTransformersEncoderConfig(model=MINILM, device="cpu", batch_size=8))
    keep = enc.acquire()
    tok = ChunkTokenizer.from_loaded(keep)
    data = [Document(id=f"w{n}", text=" ".join(["word"] * n)) for n in (1, 200, 253, 254, 255, 600)] + docs(30, seed=3)
    counts = tok.count([d.text for d in data], special=True)
    assert {255, 256, 257} <= set(counts)  # the limit's neighbours are there
    n_long = sum(n > 256 for n in counts)

    def counters_of(step: beam.PTransform) -> dict[str, int]:
        p = beam.Pipeline()
        _ = p | beam.Create(data) | step
        res = p.run()
        res.wait_until_finish()
        return {r.key.metric.name: r.committed for r in res.metrics().query(MetricsFilter())["counters"]}

    by_chunk = counters_of(ChunkDocuments(ChunkPlan(mode="truncate", max_lengths={"embedding": 256}), [("embedding", enc)]))
    by_encode = counters_of(EncodeDocuments(enc, "embedding", 3600, truncation_limit=256))
    assert by_chunk["truncated"] == by_chunk["truncated.embedding"] == n_long
    assert by_encode["truncated"] == by_encode["truncated.embedding"] == n_long
    assert by_encode["encoded.embedding"] == len(data)
    assert "truncated" not in counters_of(EncodeDocuments(enc, "embedding", 3600))  # without the limit: not counted there
    del keep
