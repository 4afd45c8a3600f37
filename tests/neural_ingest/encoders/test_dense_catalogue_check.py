"""A catalogue name loaded with weights of another shape stops the run before any encoding."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from support import MINILM, write_jsonl

TINY_DIM = 64


@pytest.fixture(scope="module")
def tiny_dense_dir(tmp_path_factory, minilm_dir) -> Path:
    """A random 64-dimensional sentence-transformers model with the MiniLM tokenizer (Transformer, Pooling, Normalize)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    root = tmp_path_factory.mktemp("tiny-dense")
    hf = root / "hf"
    tok = AutoTokenizer.from_pretrained(str(minilm_dir))
    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(
            vocab_size=tok.vocab_size,
            hidden_size=TINY_DIM,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=128,
            max_position_embeddings=512,
        )
    )
    bert.save_pretrained(hf)
    tok.save_pretrained(hf)
    st = SentenceTransformer(
        modules=[Transformer(str(hf), max_seq_length=256), Pooling(TINY_DIM, "mean"), Normalize()], device="cpu"
    )
    out = root / "st"
    st.save(str(out))
    return out


def _config(tmp_path: Path, model_path: Path | None, model: str = MINILM) -> dict:
    src = write_jsonl(tmp_path / "docs.jsonl", [{"id": str(i), "text": f"document {i}"} for i in range(5)])
    enc = {"type": "sentence_transformers", "model": model, "device": "cpu"}
    if model_path:
        enc["model_path"] = str(model_path)
    return {
        "source": {"type": "jsonl", "path": str(src)},
        "encoder": enc,
        "sink": {"type": "parquet", "path": str(tmp_path / "dataset")},
        "dead_letter": {"path": str(tmp_path / "dlq")},
    }


@pytest.fixture
def encode_calls(monkeypatch):
    from neural_ingest.encoders.dense import SentenceTransformerEncoder

    calls: list[int] = []
    original = SentenceTransformerEncoder.encode

    def counting(self, loaded, texts):
        calls.append(len(texts))
        return original(self, loaded, texts)

    monkeypatch.setattr(SentenceTransformerEncoder, "encode", counting)
    return calls


def test_wrong_shaped_weights_raise_naming_both_dimensions(tiny_dense_dir):
    from neural_ingest.catalogue import ModelMismatchError
    from neural_ingest.config import SentenceTransformersEncoderConfig
    from neural_ingest.encoders.dense import SentenceTransformerEncoder

    cfg = SentenceTransformersEncoderConfig(model="all-MiniLM-L6-v2", model_path=str(tiny_dense_dir), device="cpu")
    with pytest.raises(ModelMismatchError) as err:
        SentenceTransformerEncoder(cfg).load_model()
    msg = str(err.value)
    assert f"dimension {TINY_DIM} (loaded) != 384 (catalogue)" in msg
    assert str(tiny_dense_dir) in msg


def test_run_stops_before_encoding_with_both_dimensions(tmp_path, tiny_dense_dir, encode_calls):
    from neural_ingest.cli import main

    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(yaml.safe_dump(_config(tmp_path, tiny_dense_dir)))
    result = CliRunner().invoke(main, ["run", str(cfg_file)])
    assert result.exit_code == 2, result.output
    assert "384" in result.output and str(TINY_DIM) in result.output
    assert "Traceback" not in result.output
    assert encode_calls == []
    assert not (tmp_path / "dataset").exists()


def test_the_same_weights_under_their_own_path_are_not_checked(tmp_path, tiny_dense_dir):
    """A directory is not a catalogue name: the tiny model loads as itself (64 dimensions)."""
    from neural_ingest.config import SentenceTransformersEncoderConfig
    from neural_ingest.encoders.dense import SentenceTransformerEncoder

    info = (
        SentenceTransformerEncoder(SentenceTransformersEncoderConfig(model=str(tiny_dense_dir), device="cpu")).load_model().info
    )
    assert info.dimension == TINY_DIM and info.similarity == "cosine"


def test_undeclared_similarity_comes_from_the_catalogue(tmp_path, tiny_dense_dir):
    """A dot-product catalogue model whose files declare no similarity gets innerproduct, not cosine."""
    import shutil

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer
    from transformers import BertConfig, BertModel

    from neural_ingest.config import OpenSearchSinkConfig, SentenceTransformersEncoderConfig
    from neural_ingest.encoders.dense import SentenceTransformerEncoder
    from neural_ingest.sinks.mapping import field_mapping

    # A 768-dim CLS-pooled, unnormalized model: the shape of multi-qa-mpnet-base-dot-v1.

    hf = tmp_path / "hf768"
    BertModel(
        BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=1, num_attention_heads=12, intermediate_size=256)
    ).save_pretrained(hf)
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (tiny_dense_dir / f).exists():
            shutil.copy(tiny_dense_dir / f, hf / f)
    out = tmp_path / "dot768"
    SentenceTransformer(modules=[Transformer(str(hf)), Pooling(768, "cls")], device="cpu").save(str(out))
    # Files written by sentence-transformers 2.x (like the real model's) declare no similarity function.
    st_cfg = out / "config_sentence_transformers.json"
    st_cfg.write_text(json.dumps({k: v for k, v in json.loads(st_cfg.read_text()).items() if k != "similarity_fn_name"}))
    cfg = SentenceTransformersEncoderConfig(model="multi-qa-mpnet-base-dot-v1", model_path=str(out), device="cpu")
    info = SentenceTransformerEncoder(cfg).load_model().info
    assert info.similarity == "dot"
    assert field_mapping(OpenSearchSinkConfig(index="x"), info)["method"]["space_type"] == "innerproduct"
