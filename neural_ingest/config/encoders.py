"""Local encoder models (sentence-transformers dense, neural sparse), their batching, and encoder_field."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from neural_ingest.config.base import _Strict


class BatchingConfig(_Strict):
    """How documents are grouped into encode calls (transforms/batching.py, docs/benchmark.md)."""

    mode: Literal["sorted", "fixed"] = Field(
        "sorted", description="sorted: a window of documents sorted by length, then cut into batches (little padding); "
        "fixed: batch_size documents in arrival order."
    )
    length: Literal["tokens", "chars"] = Field(
        "tokens", description="sorted: what orders the window: the model's token counts (local models), or characters."
    )
    window: int | None = Field(None, ge=1, description="sorted: documents sorted at once; null: 32 batches' worth.")
    max_tokens: int | None = Field(
        None, ge=1, description="sorted: padded tokens per batch at most (texts x longest; bounds GPU memory); null: none."
    )


class _EncoderBase(_Strict):
    field: str | None = Field(None, description="Target field in the index; defaults per encoder kind.")
    batch_size: int = Field(32, ge=1, le=4096)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)


class _LocalModelBase(_EncoderBase):
    """What every model run in this process needs: where its weights are, the device, threads, length."""

    model: str = Field(
        description="Catalogue name (see `neural-ingest models list`, e.g. all-MiniLM-L6-v2 or "
        "opensearch-neural-sparse-encoding-doc-v1) or a model directory."
    )
    model_path: str | None = Field(None, description="Explicit directory with the model's weights.")
    models_dir: str | None = Field(None, description="Directory searched for catalogue models by name.")
    device: Literal["cpu", "cuda", "auto"] = "auto"
    max_seq_length: int | None = Field(None, ge=8, description="null keeps the model's own maximum (512 for BERT).")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads; null leaves torch's default.")


class SentenceTransformersEncoderConfig(_LocalModelBase):
    """A local dense model: a catalogue name or a path to a sentence-transformers model directory."""

    type: Literal["sentence_transformers"] = "sentence_transformers"
    normalize: bool | None = Field(None, description="null keeps the model's own normalization.")
    backend: Literal["torch", "onnx", "openvino"] = Field(
        "torch", description="torch: sentence-transformers as is; onnx (ONNX Runtime) / openvino: the same graph "
        "exported once from the local weights, on CPU (extra `fast`). docs/benchmark.md."
    )
    quantize: Literal["int8"] | None = Field(
        None, description="onnx / openvino: int8 dynamic quantization (faster; vectors within cosine 0.99 of fp32)."
    )
    backend_cache_dir: str | None = Field(
        None, description="Where exported graphs are kept; null: $NEURAL_INGEST_CACHE/backends (~/.cache/neural-ingest)."
    )

    @model_validator(mode="after")
    def _backend_fits(self) -> SentenceTransformersEncoderConfig:
        if self.quantize and self.backend == "torch":
            raise ValueError("quantize needs backend onnx or openvino")
        if self.backend != "torch" and self.device == "cuda":
            raise ValueError(f"backend {self.backend} runs on CPU: use device cpu/auto, or backend torch on cuda")
        return self

    @property
    def kind(self) -> str:
        return "dense"


class HashEncoderConfig(_EncoderBase):
    """Benchmark and test only: no model, a deterministic unit vector per text from a hash of it
    (encoders/hash.py). Measures the pipeline's own cost; its vectors carry no meaning."""

    type: Literal["hash"] = "hash"
    dimension: int = Field(384, ge=1, le=16000, description="Vector size (384: MiniLM's).")
    batch_size: int = Field(256, ge=1, le=4096)
    batching: BatchingConfig = Field(
        default_factory=lambda: BatchingConfig(mode="fixed"), description="fixed by default: no padding to save."
    )

    @property
    def kind(self) -> str:
        return "dense"


class SparsePruneConfig(_Strict):
    """Client-side pruning of document maps, with neural-search's rules (prune_type / prune_ratio)."""

    type: Literal["none", "top_k", "max_ratio", "alpha_mass", "abs_value"] = "none"
    ratio: float | None = Field(
        None, description="top_k: tokens kept (integer > 0); max_ratio, alpha_mass: [0, 1); abs_value: >= 0."
    )

    @model_validator(mode="after")
    def _ratio_fits(self) -> SparsePruneConfig:
        # The same ranges neural-search accepts (PruneUtils.isValidPruneRatio).
        t, r = self.type, self.ratio
        if t == "none":
            return self
        if r is None:
            raise ValueError(f"prune type {t!r} needs a ratio")
        if t == "top_k" and not (r > 0 and float(r).is_integer()):
            raise ValueError(f"top_k: ratio is the number of tokens kept, a positive integer (got {r})")
        if t in ("max_ratio", "alpha_mass") and not 0 <= r < 1:
            raise ValueError(f"{t}: ratio must be in [0, 1) (got {r})")
        if t == "abs_value" and not r >= 0:
            raise ValueError(f"abs_value: ratio is a weight threshold, >= 0 (got {r})")
        return self


class NeuralSparseEncoderConfig(_LocalModelBase):
    """A local neural sparse (SPLADE-style) model: documents become {token: weight} for rank_features."""

    type: Literal["neural_sparse"] = "neural_sparse"
    batch_size: int = Field(8, ge=1, le=4096, description="Masked-LM logits are batch x tokens x vocabulary: keep it small.")
    activation: Literal["log1p_relu", "log1p_log1p_relu"] | None = Field(
        None,
        description="log1p_relu = log(1+relu(x)) (v1/v2 models); log1p_log1p_relu = log(1+log(1+relu(x))) "
        "(doc-v3). null: from the model's own files, else the catalogue, else log1p_relu.",
    )
    query_mode: Literal["model", "tokenizer"] | None = Field(
        None,
        description="How `search` encodes queries: model = through the model (bi-encoders); tokenizer = "
        "tokens weighted by an IDF table (document-only models). null: from the model / catalogue.",
    )
    idf_path: str | None = Field(
        None, description="idf.json (or a directory holding one, e.g. opensearch-neural-sparse-tokenizer-v1) for "
        "tokenizer-mode query weights; null: the model directory's idf.json when there is one."
    )
    prune: SparsePruneConfig = Field(default_factory=SparsePruneConfig)

    @property
    def kind(self) -> str:
        return "sparse"


def encoder_field(cfg: _EncoderBase) -> str:
    """The index field an encoder writes to."""
    if cfg.field:
        return cfg.field
    return "embedding" if getattr(cfg, "kind", "dense") == "dense" else "sparse_embedding"
