"""Tiny masked-LM sparse models built at test time, and the reference formula computed independently.

The models are random BERT masked-LMs (hidden 32, 2 layers) with the bert-base-uncased vocabulary of
the bundled all-MiniLM-L6-v2 tokenizer. The output bias makes them sparse the way trained models
are: a few hundred tokens can ever get a positive logit (including the special tokens, "." and some
"##" pieces, so that their handling is exercised); every other token is pushed far below zero.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ACTIVE_EXTRA = [".", "...", "##ing", "##s", "search", "open", "vector", "sparse", "model"]


def minilm_tokenizer_dir() -> Path:
    from neural_ingest.model_resolve import resolve_model_dir

    return resolve_model_dir("all-MiniLM-L6-v2")


def build_mlm(out: Path, *, seed: int = 0, n_active: int = 150, idf: dict[str, float] | None = None) -> Path:
    """Save a tiny random BertForMaskedLM + tokenizer under ``out`` (a bare Hugging Face directory)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tok = AutoTokenizer.from_pretrained(str(minilm_tokenizer_dir()))
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        tie_word_embeddings=False,
    )
    model = BertForMaskedLM(cfg).eval()
    rng = np.random.default_rng(seed)
    active = set(rng.choice(np.arange(1000, tok.vocab_size), size=n_active, replace=False).tolist())
    active |= set(tok.convert_tokens_to_ids(ACTIVE_EXTRA))
    special = set(tok.all_special_ids)
    with torch.no_grad():
        dec = model.cls.predictions.decoder
        dec.weight.normal_(0.0, 0.3)
        bias = torch.full((tok.vocab_size,), -30.0)
        bias[sorted(active)] = 0.0
        bias[sorted(special)] = 3.0  # the special tokens always win: they must still be left out
        model.cls.predictions.bias.copy_(bias)
        if getattr(dec, "bias", None) is not None:
            dec.bias.copy_(bias)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    if idf is not None:
        (out / "idf.json").write_text(json.dumps(idf))
    return out


def build_st_doc_only(out: Path, mlm_dir: Path, *, query_weights: dict[str, float], activation: str = "log1p_relu") -> Path:
    """A sentence-transformers doc-only model: Router(query: SparseStaticEmbedding, document: MLM + SpladePooling).

    ``activation`` is SpladePooling's name ("relu" = log1p(relu), "log1p_relu" = log1p(log1p(relu))).
    """
    import torch
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import Router, SparseStaticEmbedding, SpladePooling, Transformer
    from transformers import AutoTokenizer

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    tok = AutoTokenizer.from_pretrained(str(mlm_dir))
    weight = torch.zeros(tok.vocab_size)
    for t, w in query_weights.items():
        weight[tok.convert_tokens_to_ids(t)] = w
    router = Router.for_query_document(
        query_modules=[SparseStaticEmbedding(tokenizer=tok, weight=weight, frozen=True)],
        document_modules=[
            Transformer(str(mlm_dir), transformer_task="fill-mask"),
            SpladePooling(pooling_strategy="max", activation_function=activation),
        ],
    )
    SparseEncoder(modules=[router], device="cpu").save(str(out))
    return out


def reference_maps(
    model_dir: Path, texts: Sequence[str], *, activation: str = "log1p_relu", max_length: int = 512
) -> list[dict[str, float]]:
    """The OpenSearch definition, computed here from raw logits with numpy: masked-LM logits ->
    log(1 + relu(x)) (twice for log1p_log1p_relu) -> max over the attention-masked sequence ->
    special tokens removed -> {token: weight} for the positive weights."""
    import torch
    from transformers import AutoTokenizer, BertForMaskedLM

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = BertForMaskedLM.from_pretrained(str(model_dir)).eval()
    vocab = tok.convert_ids_to_tokens(list(range(tok.vocab_size)))
    out = []
    for text in texts:
        enc = tok([text], truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits[0].double().numpy()  # (seq, vocab)
        x = np.log1p(np.maximum(logits, 0.0))
        if activation == "log1p_log1p_relu":
            x = np.log1p(x)
        mask = enc["attention_mask"][0].numpy().astype(bool)
        w = x[mask].max(axis=0)
        w[tok.all_special_ids] = 0.0
        out.append({vocab[i]: float(w[i]) for i in np.flatnonzero(w > 0)})
    return out


def assert_maps_close(got: dict[str, float], want: dict[str, float], *, rtol: float = 1e-4, atol: float = 1e-6) -> None:
    assert set(got) == set(want), (sorted(set(got) - set(want))[:10], sorted(set(want) - set(got))[:10])
    for t, w in want.items():
        assert abs(got[t] - w) <= atol + rtol * abs(w), (t, got[t], w)


from neural_ingest.encoders.sparse import NeuralSparseEncoder  # noqa: E402


class PoisonedSparseEncoder(NeuralSparseEncoder):
    """The real encoder, with weights OpenSearch would reject injected into marked documents:
    "POISON-NAN" -> a NaN weight, "POISON-NEG" -> a negative one, "POISON-ZERO" -> an extra token with
    weight 0 (which must be dropped, not dead-lettered)."""

    def share_key(self) -> str:
        return "poisoned:" + super().share_key()

    def encode(self, loaded, texts):
        maps = super().encode(loaded, texts)
        for text, m in zip(texts, maps):
            first = next(iter(m))
            if "POISON-NAN" in text:
                m[first] = float("nan")
            elif "POISON-NEG" in text:
                m[first] = -0.25
            elif "POISON-ZERO" in text:
                m["zeroed"] = 0.0
        return maps


# ---------------------------------------------------------------- a small corpus and configs for pipeline tests
DOCS = [
    ("d01", "Open search engines", "Search engines index documents. They rank them by relevance."),
    ("d02", "Sparse vectors", "A sparse vector maps tokens to weights. Most weights are zero."),
    ("d03", "Dense vectors", "Dense embeddings place texts in a continuous space..."),
    ("d04", "Cats", "The cat sat on the mat. It was a sunny morning."),
    ("d05", "Testing", "Testing, testing: one, two, three."),
    ("d06", "Dotted names", "Version 2.19 of the engine, e.g. with a.b.c names."),
    ("d07", "Models", "Masked language models predict missing words."),
    ("d08", "Hybrid search", "Hybrid search combines lexical and semantic signals."),
]
QUERIES = ["open search engines.", "sparse vector weights", "the cat", "hybrid semantic search..."]


def corpus(tmp: Path, extra: list[tuple[str, str, str]] | None = None) -> Path:
    from support import write_jsonl

    rows = [{"id": i, "title": t, "body": b, "topic": "t", "year": 2024} for i, t, b in DOCS + (extra or [])]
    return write_jsonl(tmp / "docs.jsonl", rows)


def config(tmp: Path, encoders: list[dict[str, Any]], sink: dict[str, Any], source: Path | None = None):
    from neural_ingest.config import parse_config

    return parse_config(
        {
            "run": {"name": "sparse-test", "progress_every_seconds": 30},
            "source": {
                "type": "jsonl",
                "path": str(source or corpus(tmp)),
                "text_fields": ["title", "body"],
                "metadata_fields": ["topic", "year"],
            },
            "encoders": encoders,
            "sink": sink,
            "dead_letter": {"path": str(tmp / "dlq")},
        }
    )


def os_sink(url: str, index: str, **kw) -> dict[str, Any]:
    return {"type": "opensearch", "hosts": [url], "index": index, "knn": {"engine": "lucene"}, **kw}


def stored(client, index: str) -> dict[str, dict[str, Any]]:
    res = client.search(index=index, body={"size": 1000, "query": {"match_all": {}}})
    return {h["_id"]: h["_source"] for h in res["hits"]["hits"]}
