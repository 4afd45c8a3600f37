"""Chunk boundaries with the real all-MiniLM-L6-v2 tokenizer, neural-search's semantics, and the Beam step."""
from __future__ import annotations

import itertools
import math

import pytest

from neural_ingest.chunking import ChunkTokenizer, delimiter, fixed_token_length, limit_reached

# Pieces of one word (BERT's WordPiece): 'anti', '##dis', '##est', '##ab', '##lish', '##ment', '##arian', '##ism'.
LONG_WORD = "antidisestablishmentarianism"


@pytest.fixture(scope="module")
def tok() -> ChunkTokenizer:
    return ChunkTokenizer.from_model("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def long_texts(sample_docs) -> list[str]:
    """The sample corpus's documents over the model's 256 tokens, as the pipeline joins them."""
    t = ChunkTokenizer.from_model("all-MiniLM-L6-v2")
    texts = [f"{d['title']}\n\n{d['body']}" for d in sample_docs]
    long = [x for x, n in zip(texts, t.count(texts, special=True)) if n > 256]
    assert len(long) >= 5
    return long


def token_spans(tok: ChunkTokenizer, text: str) -> list[tuple[int, int]]:
    return list(tok.encode(text).offsets)


def check_chunks(text: str, chunks: list[dict], tok: ChunkTokenizer, limit: int, overlap_rate: float, max_chunks: int = 100):
    """The properties every fixed_token_length result must have."""
    assert chunks and chunks[0]["start"] == 0 and chunks[-1]["end"] == len(text)
    assert [c["index"] for c in chunks] == list(range(len(chunks)))
    assert len(chunks) <= max_chunks
    for c in chunks:
        assert c["text"] == text[c["start"] : c["end"]]  # exact substring, character offsets
    # every token of the document lies inside some chunk
    for a, b in token_spans(tok, text):
        assert any(c["start"] <= a and b <= c["end"] for c in chunks), (a, b, text[a:b])
    # each chunk (but a max_chunk_limit remainder) is at most token_limit model tokens on its own
    counts = tok.count([c["text"] for c in chunks])
    limited = chunks if len(chunks) < max_chunks else chunks[:-1]
    assert all(n <= limit for n in counts[: len(limited)]), counts
    # consecutive chunks overlap by at least floor(limit * rate) tokens, and by less than a word more
    want = math.floor(limit * overlap_rate)
    spans = token_spans(tok, text)
    for cur, nxt in itertools.pairwise(chunks):
        assert nxt["start"] <= cur["end"]
        shared = [s for s in spans if s[0] >= nxt["start"] and s[1] <= cur["end"]]
        if want == 0:
            assert nxt["start"] == cur["end"]  # no overlap: the chunks tile the text
        else:
            assert want <= len(shared) < want + 8, (len(shared), want)
    return counts


@pytest.mark.parametrize("limit,rate", [(254, 0.0), (128, 0.1), (64, 0.25), (32, 0.5), (17, 0.3)])
def test_fixed_token_length_on_the_long_sample_documents(tok, long_texts, limit, rate):
    for text in long_texts:
        chunks = fixed_token_length(text, tok, limit, rate, max_chunk_limit=-1)
        check_chunks(text, chunks, tok, limit, rate, max_chunks=10**9)
        if rate == 0.0:
            assert "".join(c["text"] for c in chunks) == text


def test_default_limit_fits_the_model_window(tok, long_texts):
    # 256 positions less [CLS] and [SEP]: every chunk reaches the model whole.
    assert tok.num_special == 2
    for text in long_texts:
        chunks = fixed_token_length(text, tok, 254, 0.0, 100)
        assert len(chunks) >= 2
        assert max(tok.count([c["text"] for c in chunks], special=True)) <= 256


def test_no_overlap_cuts_between_words_and_retokenizes_identically(tok):
    text = " ".join([f"{LONG_WORD} number {i}, unbelievably." for i in range(60)])
    whole = tok.encode(text).tokens
    for limit in (9, 16, 31, 64):  # >= the 8 pieces of LONG_WORD, so no word must be cut
        chunks = fixed_token_length(text, tok, limit, 0.0, -1)
        check_chunks(text, chunks, tok, limit, 0.0, max_chunks=10**9)
        pieces = [t for c in chunks for t in tok.encode(c["text"]).tokens]
        assert pieces == whole  # no word was cut into pieces that tokenize differently
        assert all(not c["text"].lstrip().startswith(LONG_WORD[1:6]) for c in chunks)


def test_a_word_longer_than_the_limit_is_cut_inside_but_fits(tok):
    text = f"{LONG_WORD} {LONG_WORD} end"
    chunks = fixed_token_length(text, tok, 3, 0.0, -1)
    assert all(n <= 3 for n in tok.count([c["text"] for c in chunks]))
    assert "".join(c["text"] for c in chunks) == text


def test_max_chunk_limit_keeps_the_rest_in_the_last_chunk(tok, long_texts):
    text = long_texts[0]
    free = fixed_token_length(text, tok, 32, 0.0, -1)
    assert len(free) > 4
    capped = fixed_token_length(text, tok, 32, 0.0, 4)
    assert len(capped) == 4
    assert capped[:3] == free[:3]
    assert capped[3]["start"] == free[3]["start"] and capped[3]["end"] == len(text)  # the rest, like neural-search
    assert tok.count([capped[3]["text"]])[0] > 32
    assert fixed_token_length(text, tok, 32, 0.0, 1) == [{"text": text, "start": 0, "end": len(text), "index": 0}]


def test_deterministic(tok, long_texts):
    for text in long_texts:
        assert fixed_token_length(text, tok, 50, 0.2, 100) == fixed_token_length(text, tok, 50, 0.2, 100)
    assert ChunkTokenizer.from_model("all-MiniLM-L6-v2").count(long_texts) == tok.count(long_texts)


def test_short_text_is_one_chunk(tok):
    assert fixed_token_length("  Hello world. ", tok, 254) == [{"text": "  Hello world. ", "start": 0, "end": 15, "index": 0}]


def test_parameter_ranges(tok):
    with pytest.raises(ValueError):
        fixed_token_length("a b", tok, 0)
    with pytest.raises(ValueError):
        fixed_token_length("a b", tok, 10, 0.6)
    with pytest.raises(ValueError):
        delimiter("a", "")


# --------------------------------------------------------------------------- neural-search semantics
def neural_search_fixed_token_length(content, tokens, token_limit, overlap_rate, max_chunk_limit):
    """FixedTokenLengthChunker.chunk (neural-search 2.19), transcribed: ``tokens`` are (start, end) offsets."""
    out, start_token = [], 0
    overlap = math.floor(token_limit * overlap_rate)
    while start_token < len(tokens):
        start = 0 if start_token == 0 else tokens[start_token][0]
        if max_chunk_limit != -1 and len(out) + 1 >= max_chunk_limit:
            out.append(content[start:])
            break
        if start_token + token_limit >= len(tokens):
            out.append(content[start:])
            break
        out.append(content[start : tokens[start_token + token_limit][0]])
        start_token += token_limit - overlap
    return out


@pytest.fixture(scope="module")
def word_tok() -> ChunkTokenizer:
    """One token per whitespace-separated word (like the standard analyzer on plain words): the case where
    our model-token chunker must give exactly neural-search's chunks."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    t = Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    t.pre_tokenizer = WhitespaceSplit()
    return ChunkTokenizer(t, 0, "words")


@pytest.mark.parametrize(
    "limit,rate,max_chunks", [(10, 0.0, 100), (10, 0.2, 100), (7, 0.5, 100), (12, 0.3, 3), (5, 0.0, -1), (4, 0.25, 1)]
)
def test_fixed_token_length_matches_neural_search_on_word_tokens(word_tok, sample_docs, limit, rate, max_chunks):
    for d in sample_docs[:20]:
        text = f"  {d['title']}\n\n{d['body']}  "
        spans = list(word_tok.encode(text).offsets)
        ours = [c["text"] for c in fixed_token_length(text, word_tok, limit, rate, max_chunks)]
        assert ours == neural_search_fixed_token_length(text, spans, limit, rate, max_chunks)


def test_delimiter_matches_neural_search():
    # DelimiterChunker's own examples: the delimiter ends its chunk, the rest is the last chunk.
    assert [c["text"] for c in delimiter("a\n\nb\n\nc", "\n\n")] == ["a\n\n", "b\n\n", "c"]
    assert [c["text"] for c in delimiter("a.b.c.", ".")] == ["a.", "b.", "c."]
    assert [c["text"] for c in delimiter("a\n\nb\n\nc\n\nd", "\n\n", max_chunk_limit=2)] == ["a\n\n", "b\n\nc\n\nd"]
    assert [c["text"] for c in delimiter("a\n\nb\n\nc", "\n\n", max_chunk_limit=-1)] == ["a\n\n", "b\n\n", "c"]
    assert [c["text"] for c in delimiter("no delimiter here", "\n\n")] == ["no delimiter here"]


def test_delimiter_merges_blank_pieces_and_tiles_the_text():
    text = "\n\nfirst\n\n\n\nsecond\n\n  \n\nthird\n\n"
    chunks = delimiter(text, "\n\n")
    assert [c["text"] for c in chunks] == ["\n\nfirst\n\n\n\n", "second\n\n  \n\n", "third\n\n"]
    assert "".join(c["text"] for c in chunks) == text
    assert all(c["text"] == text[c["start"] : c["end"]] for c in chunks)
    assert [c["index"] for c in chunks] == [0, 1, 2]


def test_limit_reached_is_neural_search_check():
    assert not limit_reached(0, 2) and limit_reached(1, 2) and limit_reached(0, 1)
    assert not limit_reached(10**6, -1)


# --------------------------------------------------------------------------- the Beam step
def test_chunk_step_counts_truncation_and_sets_chunks(sample_docs):
    """ChunkFn with the real model: truncate mode counts documents over 256 tokens; chunk mode chunks them."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from support import MINILM, collect, collected

    from neural_ingest.chunking import ChunkPlan
    from neural_ingest.config import SentenceTransformersEncoderConfig
    from neural_ingest.encoders import make_encoder
    from neural_ingest.records import Document
    from neural_ingest.transforms.chunk import ChunkDocuments

    enc = make_encoder(SentenceTransformersEncoderConfig(model=MINILM, device="cpu"))
    keep = enc.acquire()
    docs = [Document(d["id"], f"{d['title']}\n\n{d['body']}") for d in sample_docs[:60]]
    tok = ChunkTokenizer.from_loaded(keep)
    n_long = sum(n > 256 for n in tok.count([d.text for d in docs], special=True))
    assert n_long > 0

    def run(plan):
        p = beam.Pipeline()
        out = p | beam.Create(docs) | ChunkDocuments(plan, [("embedding", enc)])
        _ = out["documents"] | collect(f"chunk-{plan.mode}")
        res = p.run()
        res.wait_until_finish()
        counters = {r.key.metric.name: r.committed for r in res.metrics().query(MetricsFilter())["counters"]}
        return collected(f"chunk-{plan.mode}"), counters

    out, counters = run(ChunkPlan(mode="truncate", max_lengths={"embedding": 256}))
    assert counters["truncated"] == counters["truncated.embedding"] == n_long
    assert all(d.chunks is None for d in out)

    plan = ChunkPlan(mode="chunk", token_limit=254, tokenizer_field="embedding", max_lengths={"embedding": 256})
    out, counters = run(plan)
    assert "truncated" not in counters  # every chunk fits
    by_id = {d.id: d for d in out}
    assert counters["chunks"] == sum(len(d.chunks) for d in out)
    for d in docs:
        assert by_id[d.id].chunks == fixed_token_length(d.text, tok, 254, 0.0, 100)
