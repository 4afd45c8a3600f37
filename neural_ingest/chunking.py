"""Long documents: chunk boundaries computed with the model's own tokenizer.

The algorithms follow neural-search's ``text_chunking`` ingest processor (FixedTokenLengthChunker,
DelimiterChunker), with these differences, all on purpose:

- ``fixed_token_length`` counts **model tokens** (the encoder's fast tokenizer, special tokens
  excluded), not the tokens of an OpenSearch word analyzer, so a chunk of ``token_limit`` tokens is
  exactly what the model sees (plus its special tokens).
- Cuts fall on word boundaries of the tokenizer's pre-tokenizer (a word split into word pieces is
  never cut in two: re-tokenizing half a word gives different, often more, tokens). Every chunk is
  re-tokenized and shrunk if it still exceeds the limit, so the limit holds for any tokenizer.
  Only a single "word" longer than the limit (a URL, base64) is cut inside.
- The next chunk starts ``floor(token_limit * overlap_rate)`` tokens before the end of the previous
  one, moved back to the start of its word: the overlap is at least the configured number of tokens.
- ``delimiter`` pieces that are only whitespace (e.g. from "\\n\\n\\n\\n") are merged into the
  neighbouring chunk instead of being embedded on their own.

Shared with neural-search: the first chunk starts at character 0 and the last ends at the end of the
text (leading / trailing whitespace included); a chunk runs up to the start of the next chunk's
first token, gap characters included, so with no overlap the chunks tile the text exactly;
``max_chunk_limit`` (default 100, -1 = no limit) caps the number of chunks and, as in neural-search
2.16+, the last allowed chunk takes **all the remaining text** (the model then truncates it; the run
summary counts it under ``truncated``). The delimiter stays at the end of the chunk it closes.

Chunks are plain dicts ``{"text", "start", "end", "index"}``: ``text == document[start:end]``
(character offsets into the prepared document text), ``index`` counts from 0. Chunking is a pure
function of the text and the settings, so ids ``<doc id>#<index>`` are stable across runs.
"""
from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

log = logging.getLogger(__name__)

DISABLED_MAX_CHUNK_LIMIT = -1
# Fields a chunk object carries besides the encoder fields (nested storage) / a chunk document's
# fields besides metadata, text and the encoder fields (separate storage).
CHUNK_KEYS = ("text", "start", "end", "index")
PARENT_ID, CHUNK_INDEX, CHUNK_START, CHUNK_END = "parent_id", "chunk_index", "chunk_start", "chunk_end"
SEPARATE_KEYS = (PARENT_ID, CHUNK_INDEX, CHUNK_START, CHUNK_END)


def chunk_id(doc_id: str, index: int) -> str:
    """The ``_id`` of a chunk stored as its own document (storage: separate)."""
    return f"{doc_id}#{index}"


def limit_reached(n_chunks: int, max_chunk_limit: int) -> bool:
    """neural-search's Chunker.checkRunTimeMaxChunkLimit for one string: the next chunk is the last allowed."""
    return max_chunk_limit != DISABLED_MAX_CHUNK_LIMIT and n_chunks + 1 >= max_chunk_limit


def _chunk(text: str, start: int, end: int, index: int) -> dict[str, Any]:
    return {"text": text[start:end], "start": start, "end": end, "index": index}


# --------------------------------------------------------------------------- tokenizer
class ChunkTokenizer:
    """A private copy of a model's fast tokenizer (HF fast tokenizers are not thread-safe), with
    truncation and padding off: token offsets, word ids and counts for whole documents."""

    def __init__(self, backend: Any, num_special: int, name: str = ""):
        self.backend = backend
        self.num_special = num_special  # special tokens the model adds to one sequence ([CLS] [SEP] -> 2)
        self.name = name

    @classmethod
    def from_hf(cls, tok: Any, name: str = "") -> ChunkTokenizer:
        backend = getattr(tok, "backend_tokenizer", None)
        if backend is None:
            raise ValueError(
                f"tokenizer of {name or type(tok).__name__} is not a fast (Rust) tokenizer: chunking needs its "
                "character offsets; use a model with a tokenizer.json"
            )
        backend = copy.deepcopy(backend)
        backend.no_truncation()
        backend.no_padding()
        return cls(backend, int(tok.num_special_tokens_to_add(pair=False)), name)

    @classmethod
    def from_loaded(cls, loaded: Any, name: str = "") -> ChunkTokenizer:
        """From an encoder's shared loaded model (dense or sparse: ``loaded.model.tokenizer``)."""
        tok = getattr(loaded.model, "tokenizer", None)
        if tok is None:
            raise ValueError(f"model {name} has no local tokenizer")
        with loaded.lock:  # copying reads the tokenizer's state; an encode may be running
            return cls.from_hf(tok, name)

    @classmethod
    def from_model(cls, model: str, models_dir: str | None = None) -> ChunkTokenizer:
        """From a catalogue name or a model directory (local files only)."""
        from transformers import AutoTokenizer

        from neural_ingest.model_resolve import resolve_model_dir

        path = resolve_model_dir(model, None, models_dir)
        return cls.from_hf(AutoTokenizer.from_pretrained(str(path), local_files_only=True), model)

    def encode(self, text: str) -> Any:
        return self.backend.encode(text, add_special_tokens=False)

    def count(self, texts: Sequence[str], special: bool = False) -> list[int]:
        """Token counts, without (or with) the model's special tokens."""
        if not texts:
            return []
        encs = self.backend.encode_batch(list(texts), add_special_tokens=False)
        extra = self.num_special if special else 0
        return [len(e.ids) + extra for e in encs]


# --------------------------------------------------------------------------- algorithms
def fixed_token_length(
    text: str, tok: ChunkTokenizer, token_limit: int, overlap_rate: float = 0.0, max_chunk_limit: int = 100
) -> list[dict[str, Any]]:
    """Chunks of at most ``token_limit`` model tokens, consecutive chunks sharing at least
    ``floor(token_limit * overlap_rate)`` tokens (see the module docstring for the exact rules)."""
    if token_limit < 1:
        raise ValueError(f"token_limit must be positive, got {token_limit}")
    if not 0.0 <= overlap_rate <= 0.5:
        raise ValueError(f"overlap_rate must be within [0, 0.5], got {overlap_rate}")
    enc = tok.encode(text)
    offsets: list[tuple[int, int]] = enc.offsets
    words: list[int | None] = enc.word_ids
    n = len(offsets)
    if n == 0:
        return [_chunk(text, 0, len(text), 0)] if text.strip() else []
    overlap = math.floor(token_limit * overlap_rate)

    def word_start(i: int, lo: int) -> int:
        """Token ``i`` moved back to the first token of its word, staying above ``lo`` (else ``i``)."""
        j = i
        while j > lo and words[j] is not None and words[j - 1] == words[j]:
            j -= 1
        return j if j > lo else i

    def char_end(e: int) -> int:
        return len(text) if e >= n else offsets[e][0]

    chunks: list[dict[str, Any]] = []
    s = 0
    while s < n:
        start = 0 if not chunks else offsets[s][0]
        if limit_reached(len(chunks), max_chunk_limit):
            chunks.append(_chunk(text, start, len(text), len(chunks)))  # the rest, like neural-search
            break
        e = s + token_limit
        e = n if e >= n else word_start(e, s)
        # Re-tokenized on its own, a piece can count differently (BPE spaces, SentencePiece prefixes):
        # shrink it until the model sees at most token_limit tokens.
        while True:
            count = tok.count([text[start:char_end(e)]])[0]
            if count <= token_limit or e - s <= 1:
                break
            e = max(s + 1, min(e - 1, word_start(e - (count - token_limit), s)))
        chunks.append(_chunk(text, start, char_end(e), len(chunks)))
        if e >= n:
            break
        nxt = e - overlap
        s = e if nxt <= s or overlap == 0 else word_start(nxt, s)
    return chunks


def delimiter(text: str, delim: str = "\n\n", max_chunk_limit: int = 100) -> list[dict[str, Any]]:
    """neural-search's DelimiterChunker: split after each ``delim`` (kept at the end of its chunk);
    whitespace-only pieces are merged into the previous chunk (or the next, at the start)."""
    if not delim:
        raise ValueError("delimiter must not be empty")
    bounds: list[list[int]] = []  # [start, end] per chunk
    cstart = 0  # where the next chunk starts (a leading blank piece stays with it)

    def add(start: int, end: int) -> None:
        nonlocal cstart
        if text[start:end].strip():
            bounds.append([cstart, end])
            cstart = end
        elif bounds:
            bounds[-1][1] = end
            cstart = end

    start = 0
    pos = text.find(delim)
    while pos != -1:
        if limit_reached(len(bounds), max_chunk_limit):
            break
        end = pos + len(delim)
        add(start, end)
        start = end
        pos = text.find(delim, start)
    if start < len(text):
        add(start, len(text))
    return [_chunk(text, a, b, i) for i, (a, b) in enumerate(bounds)]


# --------------------------------------------------------------------------- the plan for one run
@dataclass(frozen=True)
class ChunkPlan:
    """Chunking as resolved for a run: the config plus what the models decided (token limit,
    tokenizer) and each local encoder's maximum length, for the truncation counts."""

    mode: str  # truncate | chunk
    algorithm: str = "fixed_token_length"
    token_limit: int | None = None
    overlap_rate: float = 0.0
    delimiter: str = "\n\n"
    max_chunk_limit: int = 100
    storage: str = "nested"
    field: str = "chunks"
    tokenizer_field: str | None = None  # chunk with this encoder's tokenizer ...
    tokenizer_model: str | None = None  # ... or with this model's (catalogue name or directory)
    models_dir: str | None = None
    max_lengths: dict[str, int] = dc_field(default_factory=dict)  # encoder field -> max_seq_length (local encoders)

    @property
    def chunking(self) -> bool:
        return self.mode == "chunk"

    def chunk(self, text: str, tok: ChunkTokenizer | None) -> list[dict[str, Any]]:
        if self.algorithm == "delimiter":
            return delimiter(text, self.delimiter, self.max_chunk_limit)
        if tok is None or self.token_limit is None:
            raise ValueError("fixed_token_length chunking needs a tokenizer and a token_limit")
        return fixed_token_length(text, tok, self.token_limit, self.overlap_rate, self.max_chunk_limit)


def plan_chunking(cfg: Any, encoders: Sequence[tuple[str, Any]], loaded: Sequence[Any]) -> ChunkPlan | None:
    """The run's ChunkPlan from the config and the loaded models; None when there is nothing to do
    (truncate mode with no local model to count tokens with).

    ``encoders`` are (field, Encoder), ``loaded`` their loaded models, in the same order. Local
    encoders are those that ``counts_tokens`` (dense and neural sparse); remote services keep their
    own tokenizers, so their truncation is not counted.
    """
    from neural_ingest.config import ConfigError

    c = cfg.chunking
    local = [(f, ld) for (f, e), ld in zip(encoders, loaded) if e.counts_tokens]
    max_lengths = {f: int(ld.info.max_seq_length) for f, ld in local if ld.info.max_seq_length}
    if c.mode == "truncate":
        if not max_lengths:
            return None
        return ChunkPlan(mode="truncate", max_lengths=max_lengths)

    fields = [f for f, _ in encoders]
    tok_field = tok_model = None
    if c.tokenizer is None:
        if local:
            tok_field = local[0][0]
    elif c.tokenizer in fields:
        if c.tokenizer not in dict(local):
            raise ConfigError(f"chunking.tokenizer: encoder field {c.tokenizer!r} is a remote model with no local tokenizer")
        tok_field = c.tokenizer
    else:
        tok_model = c.tokenizer
    token_limit = c.token_limit
    if c.algorithm == "fixed_token_length":
        if tok_field is None and tok_model is None:
            raise ConfigError(
                "chunking.algorithm fixed_token_length counts tokens with a local tokenizer, and no encoder has one: "
                "set chunking.tokenizer to a model name or directory (the remote model's tokenizer)"
            )
        try:
            tok = (
                ChunkTokenizer.from_loaded(dict(local)[tok_field], tok_field)
                if tok_field
                else ChunkTokenizer.from_model(str(tok_model), c.models_dir)
            )
        except (OSError, ValueError) as e:
            raise ConfigError(f"chunking.tokenizer: {e}") from None
        # The smallest window of the local models, less the special tokens each sequence gets.
        fitting = min(max_lengths.values()) - tok.num_special if max_lengths else None
        if token_limit is None:
            if fitting is None:
                raise ConfigError("chunking.token_limit is required when no encoder reports a maximum length")
            token_limit = fitting
        elif fitting is not None and token_limit > fitting:
            log.warning(
                "chunking.token_limit %d is above what the models take (%d tokens + %d special): chunks will be "
                "truncated by the model (counted as truncated)", token_limit, fitting, tok.num_special,
            )
    return ChunkPlan(
        mode="chunk",
        algorithm=c.algorithm,
        token_limit=token_limit,
        overlap_rate=c.overlap_rate,
        delimiter=c.delimiter,
        max_chunk_limit=c.max_chunk_limit,
        storage=c.storage,
        field=c.field,
        tokenizer_field=tok_field,
        tokenizer_model=tok_model,
        models_dir=c.models_dir,
        max_lengths=max_lengths,
    )
