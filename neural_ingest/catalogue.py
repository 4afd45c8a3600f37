"""The pretrained model catalogue: OpenSearch's pretrained models, with the figures of the models themselves.

Source: the OpenSearch "Pretrained models" page (names, versions, formats, artifact and config URLs,
auto-truncation, the one ``model_content_hash_value`` it prints) for the 9 dense sentence-transformers
models and the 3 neural-sparse models. Dimension, pooling, normalization, similarity and
``max_seq_length`` come from each model's own files (``config.json``, ``modules.json``,
``1_Pooling/config.json``, ``sentence_bert_config.json``, ``config_sentence_transformers.json``). Where
the page disagrees with a model, the model wins; every such correction is a comment on the entry and
is listed in the entry's ``corrections`` (shown by ``neural-ingest models show``).

Users name a model as OpenSearch does (``huggingface/sentence-transformers/all-MiniLM-L6-v2``); the
Hugging Face id (``sentence-transformers/all-MiniLM-L6-v2``) and the short name work too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from neural_ingest.errors import NeuralIngestError

if TYPE_CHECKING:  # encoders.base imports Beam; `neural-ingest models list` should not pay for that
    from neural_ingest.encoders.base import ModelInfo

ARTIFACTS = "https://artifacts.opensearch.org/models/ml-models"

# Must equal neural_ingest.encoders.base.SPACE_TYPES (a test checks); copied to keep this module light.
_SPACE_TYPES = {"cosine": "cosinesimil", "dot": "innerproduct", "euclidean": "l2"}

TEXT_EMBEDDING = "TEXT_EMBEDDING"
SPARSE_ENCODING = "SPARSE_ENCODING"
SPARSE_TOKENIZE = "SPARSE_TOKENIZE"


class ModelMismatchError(NeuralIngestError, ValueError):
    """A loaded model does not match its catalogue entry (dimension, similarity or normalization)."""


class UnknownModelError(NeuralIngestError, KeyError):
    """A name that is not in the catalogue; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


@dataclass(frozen=True)
class ArtifactFormat:
    """One downloadable form of a model (as ML Commons names it) and its OpenSearch config file."""

    model_format: str  # "TORCH_SCRIPT" | "ONNX"
    model_url: str
    config_url: str

    def as_dict(self) -> dict[str, str]:
        return {"model_format": self.model_format, "model_url": self.model_url, "config_url": self.config_url}


@dataclass(frozen=True)
class CatalogueEntry:
    name: str  # as OpenSearch names it
    kind: str  # "dense" | "sparse"
    function_name: str  # ML Commons function: TEXT_EMBEDDING | SPARSE_ENCODING | SPARSE_TOKENIZE
    version: str
    formats: tuple[ArtifactFormat, ...]
    max_seq_length: int
    auto_truncation: bool  # the page's column: the OpenSearch artifact's tokenizer truncates long input
    model_type: str  # Hugging Face config.json model_type (ML Commons model_config.model_type)
    architecture: str
    description: str
    dimension: int | None = None  # dense only
    similarity: str | None = None  # dense only: "cosine" | "dot"
    pooling: str | None = None  # "mean" | "cls" (dense); "max" over tokens (sparse encoders)
    normalized: bool | None = None  # dense: the model ends with a Normalize module
    model_content_hash_value: str | None = None  # sha256 of the TorchScript zip, where the page gives it
    role: str | None = None  # sparse: "bi-encoder" | "document-only" | "query-tokenizer"
    query_model: str | None = None  # sparse document-only: the model that encodes queries
    corrections: tuple[str, ...] = field(default_factory=tuple)

    @property
    def short_name(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def hf_id(self) -> str:
        """The Hugging Face repository id (``sentence-transformers/...``, ``opensearch-project/...``)."""
        org = "sentence-transformers" if self.kind == "dense" else "opensearch-project"
        return f"{org}/{self.short_name}"

    @property
    def space_type(self) -> str | None:
        """k-NN space type for the model's similarity (the same table ModelInfo uses)."""
        return _SPACE_TYPES.get(self.similarity or "")

    @property
    def field_type(self) -> str:
        return "knn_vector" if self.kind == "dense" else "rank_features"

    def format(self, model_format: str = "TORCH_SCRIPT") -> ArtifactFormat:
        want = model_format.upper()
        for f in self.formats:
            if f.model_format == want:
                return f
        have = ", ".join(f.model_format for f in self.formats)
        raise ValueError(f"{self.name} is published as {have}, not {want}")

    def model_info(self) -> ModelInfo:
        """What the mapping derivation needs, from the catalogue alone (no model is loaded)."""
        from neural_ingest.encoders.base import ModelInfo

        return ModelInfo(
            name=self.name,
            kind=self.kind,
            dimension=self.dimension,
            similarity=self.similarity,
            normalized=self.normalized,
            max_seq_length=self.max_seq_length,
        )

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "dimension": self.dimension,
            "space_type": self.space_type,
            "similarity": self.similarity,
            "pooling": self.pooling,
            "normalized": self.normalized,
            "max_seq_length": self.max_seq_length,
            "auto_truncation": self.auto_truncation,
            "function_name": self.function_name,
            "version": self.version,
            "formats": [f.as_dict() for f in self.formats],
            "field_type": self.field_type,
            "model_type": self.model_type,
            "architecture": self.architecture,
            "hf_id": self.hf_id,
        }
        if self.model_content_hash_value:
            d["model_content_hash_value"] = self.model_content_hash_value
        if self.role:
            d["role"] = self.role
        if self.query_model:
            d["query_model"] = self.query_model
        if self.corrections:
            d["corrections"] = list(self.corrections)
        return d


def _dense_formats(short: str, version: str = "1.0.1", torchscript_config_url: str | None = None) -> tuple[ArtifactFormat, ...]:
    base = f"{ARTIFACTS}/huggingface/sentence-transformers/{short}/{version}"
    return (
        ArtifactFormat(
            "TORCH_SCRIPT",
            f"{base}/torch_script/sentence-transformers_{short}-{version}-torch_script.zip",
            torchscript_config_url or f"{base}/torch_script/config.json",
        ),
        ArtifactFormat(
            "ONNX",
            f"{base}/onnx/sentence-transformers_{short}-{version}-onnx.zip",
            f"{base}/onnx/config.json",
        ),
    )


def _sparse_format(short: str, zip_name: str, version: str = "1.0.0") -> tuple[ArtifactFormat, ...]:
    base = f"{ARTIFACTS}/amazon/neural-sparse/{short}/{version}/torch_script"
    return (ArtifactFormat("TORCH_SCRIPT", f"{base}/{zip_name}", f"{base}/config.json"),)


_ST = "huggingface/sentence-transformers"
_NS = "amazon/neural-sparse"

# The OpenSearch page labels every dense artifact 1.0.1 ("as of OpenSearch 2.6") and every sparse one 1.0.0.
ENTRIES: tuple[CatalogueEntry, ...] = (
    CatalogueEntry(
        name=f"{_ST}/all-distilroberta-v1",
        kind="dense", function_name=TEXT_EMBEDDING, version="1.0.1",
        formats=_dense_formats("all-distilroberta-v1"),
        dimension=768, similarity="cosine", pooling="mean", normalized=True,
        max_seq_length=512, auto_truncation=True,
        model_type="roberta", architecture="DistilRoBERTa-base, 6 layers",
        description="General-purpose English sentence embeddings.",
    ),
    CatalogueEntry(
        name=f"{_ST}/all-MiniLM-L6-v2",
        kind="dense", function_name=TEXT_EMBEDDING, version="1.0.1",
        formats=_dense_formats("all-MiniLM-L6-v2"),
        dimension=384, similarity="cosine", pooling="mean", normalized=True,
        max_seq_length=256, auto_truncation=True,
        model_type="bert", architecture="BERT (MiniLM-L6-H384)",
        description="Small, fast general-purpose English sentence embeddings (the default model).",
    ),
    CatalogueEntry(
        name=f"{_ST}/all-MiniLM-L12-v2",
        kind="dense", function_name=TEXT_EMBEDDING, version="1.0.1",
        # Correction: the page's TorchScript config_url points at .../onnx/config.json (the ONNX
        # artifact's config); the TorchScript artifact's config sits beside it in torch_script/.
        formats=_dense_formats(
            "all-MiniLM-L12-v2",
            torchscript_config_url=f"{ARTIFACTS}/{_ST}/all-MiniLM-L12-v2/1.0.1/torch_script/config.json",
        ),
        dimension=384, similarity="cosine", pooling="mean", normalized=True,
        max_seq_length=128, auto_truncation=True,
        model_type="bert", architecture="BERT (MiniLM-L12-H384)",
        description="General-purpose English sentence embeddings, 12 layers.",
        corrections=(
            "the page's TorchScript config_url points at the ONNX config (onnx/config.json); "
            "corrected to torch_script/config.json",
        ),
    ),
    CatalogueEntry(
        name=f"{_ST}/all-mpnet-base-v2",
        kind="dense", function_name=TEXT_EMBEDDING, version="1.0.1",
        formats=_dense_formats("all-mpnet-base-v2"),
        dimension=768, similarity="cosine", pooling="mean", normalized=True,
        max_seq_length=384, auto_truncation=True,
        model_type="mpnet", architecture="MPNet-base, 12 layers",
        description="Highest-quality general-purpose English sentence embeddings of the set.",
    ),
    CatalogueEntry(
        name=f"{_ST}/msmarco-distilbert-base-tas-b",
        kind="dense", function_name=TEXT_EMBEDDING, version="1.0.1",
        formats=_dense_formats("msmarco-distilbert-base-tas-b"),
        # The model was trained for dot-product scores on unnormalized CLS vectors: cosinesimil would
        # change its ranking, so the k-NN space is innerproduct. Its files declare no similarity
        # function (sentence-transformers would default to cosine); the catalogue supplies "dot".
        dimension=768, similarity="dot", pooling="cls", normalized=False,
        max_seq_length=512, auto_truncation=False,  # the page: "No" for this artifact
        model_type="distilbert", architecture="DistilBERT, 6 layers",
        description="Semantic search (MS MARCO, TAS-balanced); dot-product scores.",
        corrections=(
            "the page gives no similarity: the model is a dot-product model (CLS pooling, no Normalize "
            "module), so space_type is innerproduct, not the cosinesimil default",
        ),
    ),
    CatalogueEntry(
        name=f"{_ST}/multi-qa-MiniLM-L6-cos-v1",
        kind="dense", function_name=TEXT_EMBEDDING, version="1.0.1",
        formats=_dense_formats("multi-qa-MiniLM-L6-cos-v1"),
        dimension=384, similarity="cosine", pooling="mean", normalized=True,
        max_seq_length=512, auto_truncation=True,
        model_type="bert", architecture="BERT (MiniLM-L6-H384)",
        description="Semantic search, trained on 215M question/answer pairs; cosine scores.",
    ),
    CatalogueEntry(
        name=f"{_ST}/multi-qa-mpnet-base-dot-v1",
        kind="dense", function_name=TEXT_EMBEDDING, version="1.0.1",
        formats=_dense_formats("multi-qa-mpnet-base-dot-v1"),
        # Correction: the page says 384 dimensions; the model (MPNet-base, hidden size 768, CLS
        # pooling) gives 768. Like tas-b it is a dot-product model: innerproduct, unnormalized.
        dimension=768, similarity="dot", pooling="cls", normalized=False,
        max_seq_length=512, auto_truncation=True,
        model_type="mpnet", architecture="MPNet-base",
        description="Semantic search, trained on 215M question/answer pairs; dot-product scores.",
        corrections=(
            "the page says 384 dimensions; the model gives 768",
            "the page gives no similarity: the model is a dot-product model (CLS pooling, no Normalize "
            "module), so space_type is innerproduct, not the cosinesimil default",
        ),
    ),
    CatalogueEntry(
        name=f"{_ST}/paraphrase-MiniLM-L3-v2",
        kind="dense", function_name=TEXT_EMBEDDING, version="1.0.1",
        formats=_dense_formats("paraphrase-MiniLM-L3-v2"),
        # No Normalize module, but trained and evaluated with cosine similarity: cosinesimil.
        dimension=384, similarity="cosine", pooling="mean", normalized=False,
        max_seq_length=128, auto_truncation=True,
        model_type="bert", architecture="BERT (MiniLM-L3-H384)",
        description="Very small paraphrase model; unnormalized vectors compared by cosine.",
    ),
    CatalogueEntry(
        name=f"{_ST}/paraphrase-multilingual-MiniLM-L12-v2",
        kind="dense", function_name=TEXT_EMBEDDING, version="1.0.1",
        formats=_dense_formats("paraphrase-multilingual-MiniLM-L12-v2"),
        # No Normalize module, but a cosine model: cosinesimil.
        dimension=384, similarity="cosine", pooling="mean", normalized=False,
        max_seq_length=128, auto_truncation=True,
        model_type="bert", architecture="BERT, multilingual vocabulary (250,037 tokens)",
        description="Multilingual (50+ languages) paraphrase model; unnormalized vectors compared by cosine.",
    ),
    # ---------------------------------------------------------------- neural sparse (bert-base-uncased, 512 tokens)
    CatalogueEntry(
        name=f"{_NS}/opensearch-neural-sparse-encoding-v1",
        kind="sparse", function_name=SPARSE_ENCODING, version="1.0.0",
        formats=_sparse_format(
            "opensearch-neural-sparse-encoding-v1", "opensearch-neural-sparse-encoding-v1-1.0.0-torch_script.zip"
        ),
        pooling="max", max_seq_length=512, auto_truncation=True,
        model_type="bert", architecture="BERT-base masked LM, vocabulary 30,522 (bert-base-uncased)",
        role="bi-encoder",
        description="Neural sparse bi-encoder: documents and queries both become token->weight maps "
        "(MLM logits -> log(1+relu) -> max over tokens).",
        # Correction: the page's example request body names this model but carries the doc-v1 url
        # and doc-v1's content hash; the page gives no hash for this model itself.
        corrections=(
            "the page's sparse example body pairs this name with the doc-v1 url and hash; this model's "
            "own url is used and no hash is claimed for it",
        ),
    ),
    CatalogueEntry(
        name=f"{_NS}/opensearch-neural-sparse-encoding-doc-v1",
        kind="sparse", function_name=SPARSE_ENCODING, version="1.0.0",
        formats=_sparse_format(
            "opensearch-neural-sparse-encoding-doc-v1", "opensearch-neural-sparse-encoding-doc-v1-1.0.0-torch_script.zip"
        ),
        pooling="max", max_seq_length=512, auto_truncation=True,
        model_type="bert", architecture="BERT-base masked LM, vocabulary 30,522 (bert-base-uncased)",
        role="document-only",
        query_model=f"{_NS}/opensearch-neural-sparse-tokenizer-v1",
        # The page prints this hash in its example body under the encoding-v1 name, next to this
        # model's url: it is this model's (doc-v1) TorchScript zip.
        model_content_hash_value="9a41adb6c13cf49a7e3eff91aef62ed5035487a6eca99c996156d25be2800a9a",
        description="Neural sparse document encoder (ingest side only); queries go through "
        "opensearch-neural-sparse-tokenizer-v1.",
        corrections=(
            "the page shows this model's url and hash under the encoding-v1 name; they belong to doc-v1",
        ),
    ),
    CatalogueEntry(
        name=f"{_NS}/opensearch-neural-sparse-tokenizer-v1",
        kind="sparse", function_name=SPARSE_TOKENIZE, version="1.0.0",
        # The page's file name has no "-torch_script" suffix for this one; that is the published name.
        formats=_sparse_format("opensearch-neural-sparse-tokenizer-v1", "opensearch-neural-sparse-tokenizer-v1-1.0.0.zip"),
        pooling=None, max_seq_length=512, auto_truncation=True,
        model_type="bert", architecture="bert-base-uncased tokenizer + IDF weight table",
        role="query-tokenizer",
        description="Query-side tokenizer for document-only sparse models: tokens weighted by an IDF table "
        "(1.0 where the table has none).",
    ),
)

_BY_NAME: dict[str, CatalogueEntry] = {}
for _e in ENTRIES:
    for _alias in (_e.name, _e.hf_id, _e.short_name):
        _BY_NAME[_alias.lower()] = _e


def lookup(name: str) -> CatalogueEntry | None:
    """The entry for a full OpenSearch name, a Hugging Face id or a short name; None if not catalogued.

    A filesystem path (``/models/all-MiniLM-L6-v2``) is not a catalogue name.
    """
    return _BY_NAME.get(name.strip().rstrip("/").lower())


def get(name: str) -> CatalogueEntry:
    entry = lookup(name)
    if entry is None:
        raise UnknownModelError(
            f"{name!r} is not in the model catalogue; known models: " + ", ".join(e.name for e in ENTRIES)
        )
    return entry


def verify_loaded(
    name: str,
    *,
    dimension: int | None,
    similarity: str | None,
    normalized: bool | None,
    source: str = "",
) -> CatalogueEntry | None:
    """Check a loaded model against its catalogue entry; raise :class:`ModelMismatchError` naming both values.

    ``similarity`` is the function the model's own files declare (None when they declare none: then it
    is not compared, and the catalogue's value should be used). Returns the entry, or None when
    ``name`` is not a catalogue name (nothing to check).
    """
    entry = lookup(name)
    if entry is None or entry.kind != "dense":
        return entry
    problems = []
    if dimension is not None and entry.dimension is not None and dimension != entry.dimension:
        problems.append(f"dimension {dimension} (loaded) != {entry.dimension} (catalogue)")
    if similarity is not None and entry.similarity is not None and similarity != entry.similarity:
        problems.append(f"similarity {similarity!r} (loaded) != {entry.similarity!r} (catalogue)")
    if normalized is not None and entry.normalized is not None and bool(normalized) != entry.normalized:
        problems.append(f"normalized {bool(normalized)} (loaded) != {entry.normalized} (catalogue)")
    if problems:
        where = f" from {source}" if source else ""
        raise ModelMismatchError(
            f"the weights loaded{where} for model {entry.name} do not match its catalogue entry: "
            + "; ".join(problems)
            + ". Fix: point model_path / models_dir at the weights of that model, or set `model` to the "
            "directory of the model you have (a path is not checked against the catalogue)."
        )
    return entry
