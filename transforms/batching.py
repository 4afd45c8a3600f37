"""Length-sorted, token-budget batching: encode calls on texts of similar length, so less padding.

A transformer encodes a batch padded to its longest text. Fixed-size batches in arrival order pad
short texts to the length of whatever long text shares their batch: on real corpora (lengths from
a sentence to a page) more than half of the tokens computed are padding. Here a window of documents
(per Beam window, per bundle) is buffered, sorted by length (the model's own token counts, or
characters as a cheap proxy) and cut into encode calls bounded by a count of texts and, optionally,
by padded tokens (count x longest), which also bounds a batch's memory on a GPU.

sentence-transformers' ``encode`` sorts the texts of one call by character length; a pipeline's
per-batch calls do not get that for free across batches, hence this module. Sorting by token counts
rather than characters leaves almost no padding at all.

The sort happens inside the encode step (``EncodeWindowFn``), which hands the window's documents on in
their arrival order: downstream (and an index's HNSW graph, whose shape depends on insertion order)
sees the same order as with fixed-size batches. Nothing is held across bundles: ``finish_bundle``
emits what is left, as WindowedValues.

Each text is tokenized once: where the encoder can (``Encoder.tokenize``: a plain torch
sentence-transformers model, encoders/pretokenized.py), the window's tokens give the sort, the truncation
counts and, through ``Encoder.encode_tokenized``, the model's input, with the same vectors as ``encode``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue

from neural_ingest.encoders.base import Encoder, Tokenized
from neural_ingest.model_info import Vector
from neural_ingest.transforms import counters
from neural_ingest.transforms.chunks import Chunk
from neural_ingest.transforms.encode import EncodeBatchFn

# Tokens per character of English prose for BERT-style WordPiece vocabularies (about 4 characters a
# token); only used to estimate padded tokens where the model's tokenizer is not asked.
CHARS_PER_TOKEN = 4.0


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """How to cut batches (resolved from an encoder's config; see ``plan_for``)."""

    batch_size: int  # texts per batch at most
    mode: str = "sorted"  # sorted | fixed
    length: str = "tokens"  # tokens | chars
    window: int | None = None  # documents buffered and sorted at once; None: 32 batches' worth
    max_tokens: int | None = None  # padded tokens per batch at most (count x longest); None: no bound
    max_seq_length: int | None = None  # the model's truncation: longer texts count as this many tokens

    @property
    def window_docs(self) -> int:
        return max(self.window or 32 * self.batch_size, self.batch_size)


def plan_for(encoder: Encoder[Any], max_seq_length: int | None = None) -> BatchPlan:
    """The batching plan for an encoder: its ``batching()``, else fixed-size batches."""
    b = encoder.batching()
    size = encoder.batch_size()
    if b is None:
        return BatchPlan(size, mode="fixed")
    return BatchPlan(
        size,
        mode=b.mode,
        length=b.length,
        window=b.window,
        max_tokens=b.max_tokens,
        max_seq_length=max_seq_length or encoder.max_seq_length(),
    )


def _units(doc: Any) -> int:
    """Texts a document gives the encoder: its chunks when chunking is on, else one."""
    chunks = getattr(doc, "chunks", None)
    return len(chunks) if chunks is not None else 1


def _chars(doc: Any) -> int:
    chunks = getattr(doc, "chunks", None)
    if chunks is not None:  # chunked: the longest chunk sets the padding of its encode call
        return max((len(c.get("text", "")) for c in chunks), default=0)
    return len(getattr(doc, "text", doc) if not isinstance(doc, str) else doc)


def cut_batches(
    items: Sequence[Any], lengths: Sequence[int], batch_size: int, max_tokens: int | None, units: Callable[[Any], int] = _units
) -> list[list[Any]]:
    """Sort ``items`` by length (longest first, stable) and cut them into batches of at most
    ``batch_size`` units and, with ``max_tokens``, at most that many padded tokens (units x longest).
    A single item over the budget still forms a batch of its own."""
    order = sorted(range(len(items)), key=lambda i: -lengths[i])
    batches: list[list[Any]] = []
    cur: list[Any] = []
    cur_units = 0
    cur_max = 0
    for i in order:
        n = units(items[i])
        longest = max(cur_max, lengths[i])
        over_count = cur_units + n > batch_size
        over_tokens = max_tokens is not None and (cur_units + n) * longest > max_tokens
        if cur and (over_count or over_tokens):
            batches.append(cur)
            cur, cur_units, longest = [], 0, lengths[i]
        cur.append(items[i])
        cur_units += n
        cur_max = longest
    if cur:
        batches.append(cur)
    return batches


class BufferDocumentsFn(beam.DoFn):
    """Buffer up to ``window_docs`` documents per Beam window; emit them as one list, in arrival order.
    An element that is a list of documents (a chunk: ``ReadRecords(chunked=True)`` on) adds all of them.
    ``exact``: lists of exactly ``window_docs`` (the rest at the bundle's end), as ``BatchElements`` of
    that fixed size cuts them."""

    def __init__(self, window_docs: int, exact: bool = False):
        self.window_docs = window_docs
        self.exact = exact
        self._buffers: dict[Any, list[Any]] = {}

    def start_bundle(self) -> None:
        self._buffers = {}

    def process(self, element: Any, window: Any = beam.DoFn.WindowParam) -> Iterable[WindowedValue]:
        buf = self._buffers.setdefault(window, [])
        if type(element) is list:
            buf.extend(element)
        else:
            buf.append(element)
        n = self.window_docs
        if len(buf) >= n:
            del self._buffers[window]
            if not self.exact:
                yield WindowedValue(buf, window.max_timestamp(), (window,))
                return
            full = len(buf) - len(buf) % n
            for i in range(0, full, n):
                yield WindowedValue(buf[i:i + n], window.max_timestamp(), (window,))
            if full < len(buf):
                self._buffers[window] = buf[full:]

    def finish_bundle(self) -> Iterable[WindowedValue]:
        for window, buf in self._buffers.items():
            if buf:
                yield WindowedValue(buf, window.max_timestamp(), (window,))
        self._buffers = {}


class EncodeWindowFn(EncodeBatchFn):
    """An ``EncodeBatchFn`` (per-document isolation, dead letters, counters: all its own) that takes a
    window of documents, encodes it in length-sorted batches, and emits the encoded documents in the
    window's order (dead letters as they come)."""

    def __init__(self, encoder: Encoder[Any], field: str, progress_every: float, plan: BatchPlan,
                 truncation_limit: int | None = None, lists: bool = False):
        super().__init__(encoder, field, progress_every, lists)
        self.plan = plan
        # Truncate mode (chunking.py): the documents over this many tokens are counted here, from the counts
        # the sort takes anyway, instead of by a ChunkFn that tokenized each document once more.
        self.truncation_limit = truncation_limit
        self._tokens: dict[int, Any] = {}  # id(document) -> its tokens from the encoder, for the current window

    def _count_tokens(self, texts: list[str], cap: int | None) -> list[int]:
        """Token counts from the shared model's tokenizer, truncated at ``cap`` (so no over-length
        warning); encoders without a ``tokenizer`` attribute count with their own ``token_lengths``."""
        loaded = self._model()
        tok = getattr(loaded.model, "tokenizer", None)
        if tok is None or not cap:
            return self.encoder.token_lengths(loaded, texts)
        with loaded.lock:  # HF fast tokenizers are not thread-safe
            ids = tok(texts, add_special_tokens=True, truncation=True, max_length=cap)["input_ids"]
        return [len(x) for x in ids]

    def _tokenize(self, texts: list[str], limit: int | None) -> Tokenized | None:
        """The encoder's own tokenization of the texts, once for the sort, the truncation counts and the
        encode (None: the encoder tokenizes inside ``encode``; the counts come from ``_count_tokens``)."""
        tokenize = getattr(self.encoder, "tokenize", None)
        info = getattr(self._loaded, "info", None)
        if not callable(tokenize) or (limit and limit != getattr(info, "max_seq_length", None)):
            return None  # its truncation flags are at the model's maximum, the limit is another one
        try:
            tokenized: Tokenized | None = tokenize(self._loaded, texts)
        except Exception:  # noqa: BLE001 - the counting path below decides what a failure means
            return None
        return tokenized

    def _lengths(self, docs: list[Any]) -> list[int]:
        info = getattr(self._loaded, "info", None)
        cap = self.plan.max_seq_length or getattr(info, "max_seq_length", None)
        lengths = [max(1, int(_chars(d) / CHARS_PER_TOKEN)) for d in docs]
        plain = [i for i, d in enumerate(docs) if getattr(d, "chunks", None) is None]
        limit = self.truncation_limit
        self._tokens = {}
        if self.plan.length == "tokens" and plain and self.encoder.counts_tokens:
            texts = [docs[i].text for i in plain]
            over: int | None = None
            if (tokenized := self._tokenize(texts, limit)) is not None:
                counts = tokenized.lengths
                over = sum(tokenized.truncated)
                if tokenized.tokens is not None:  # handed to encode_tokenized by _encode: no second tokenization
                    self._tokens = {id(docs[i]): t for i, t in zip(plain, tokenized.tokens)}
            else:
                try:  # one token past the limit tells a document over it from one that just fits
                    counts = self._count_tokens(texts, limit + 1 if limit else cap)
                except Exception:
                    if limit:
                        raise  # ... but the truncation counts must not go missing (ChunkFn's count failed the run too)
                    counts = []
            for i, n in zip(plain, counts):
                lengths[i] = n
            if limit:
                over = sum(n > limit for n in counts) if over is None else over
                if over:
                    counters.inc(f"truncated.{self.field}", over)
                    counters.inc("truncated", over)
        if cap:
            lengths = [min(n, cap) for n in lengths]
        return lengths

    def _encode(self, batch: Sequence[Any]) -> list[Vector]:
        """From the window's tokens where the encoder gave them (the same vectors), else from the texts."""
        tokens = self._tokens
        if tokens and all(id(d) in tokens for d in batch):
            return self.encoder.encode_tokenized(self._model(), [tokens[id(d)] for d in batch])
        return super()._encode(batch)

    def process(self, window: Any) -> Iterable[Any]:
        docs = list(window)
        if not docs:
            return
        p = self.plan
        done: dict[int, Any] = {}  # input position -> encoded document
        pos = {id(d): i for i, d in enumerate(docs)}
        for batch in cut_batches(docs, self._lengths(docs), p.batch_size, p.max_tokens):
            failed: set[int] = set()
            encoded = []
            for out in self._outputs(batch):
                if isinstance(out, beam.pvalue.TaggedOutput):
                    failed.add(id(getattr(out.value, "record", None)))
                    yield out
                else:
                    encoded.append(out)
            # _outputs yields the batch's successes in batch order: pair them with their inputs
            for doc, enc in zip((d for d in batch if id(d) not in failed), encoded):
                done[pos[id(doc)]] = enc
        self._tokens = {}
        if self.lists:
            if done:
                yield [done[i] for i in sorted(done)]
            return
        for i in sorted(done):
            yield done[i]


def counts_tokens(encoder: Encoder[Any]) -> bool:
    """True when the encode step counts every document's tokens with the model (sorted by token counts)."""
    plan = plan_for(encoder)
    return plan.mode == "sorted" and plan.length == "tokens" and encoder.counts_tokens


def batching_for(
    encoder: Encoder[Any],
    field: str,
    progress_every: float,
    truncation_limit: int | None = None,
    chunked: bool = False,
    lists: bool = False,
) -> tuple[beam.PTransform[Any, Any], EncodeBatchFn]:
    """(batching transform, encode DoFn) for an encoder's ``batching`` config: windows encoded in
    length-sorted batches (sorted, the default), or ``BatchElements`` of ``batch_size`` units in
    arrival order and the plain ``EncodeBatchFn`` (fixed). ``truncation_limit``: the window counts the
    documents over it (only where ``counts_tokens``). ``chunked``: elements may be lists of documents (fixed:
    cut into lists of ``batch_size`` by ``BufferDocumentsFn(exact=True)``); ``lists``: the encoded documents leave as
    one list a batch or window instead of one element each."""
    plan = plan_for(encoder)
    if plan.mode == "fixed":
        batch = (
            beam.ParDo(BufferDocumentsFn(plan.batch_size, exact=True)).with_output_types(Chunk) if chunked
            else beam.BatchElements(min_batch_size=plan.batch_size, max_batch_size=plan.batch_size, element_size_fn=_units)
        )
        return batch, EncodeBatchFn(encoder, field, progress_every, lists)
    return beam.ParDo(BufferDocumentsFn(plan.window_docs)).with_output_types(Chunk), EncodeWindowFn(
        encoder, field, progress_every, plan, truncation_limit, lists
    )


class Unchunk(beam.PTransform[beam.PCollection[Any], beam.PCollection[Any]]):
    """Lists of documents (and single ones) -> one element a document, for steps that take them one by one."""

    def expand(self, docs: beam.PCollection[Any]) -> beam.PCollection[Any]:
        each: beam.PCollection[Any] = docs | "Unchunk" >> beam.FlatMap(_each)
        return each


def _each(element: Any) -> Iterable[Any]:
    return element if type(element) is list else (element,)
