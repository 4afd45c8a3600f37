"""Typed run configuration: YAML in, validated pydantic models out.

Secrets never live in the YAML itself: ``${ENV}`` (or ``${ENV:-default}``) is replaced from the
environment when the file is loaded, and fields holding secrets are ``SecretStr`` so they print as
``**********`` in logs, errors and summaries.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """A config problem, phrased as the field at fault and how to fix it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --------------------------------------------------------------------------- sources
class SourceConfig(_Strict):
    type: Literal["jsonl", "csv", "parquet", "text"] = Field(
        description="File format of the source documents."
    )
    path: str = Field(description="File path or glob; gs:// and s3:// work where Beam's extras are installed.")
    id_field: str | None = Field(
        "id", description="Field holding the document id; null derives the id from a hash of the content."
    )
    text_fields: list[str] = Field(["text"], min_length=1, description="Fields joined to form the text to embed.")
    text_separator: str = "\n\n"
    metadata_fields: list[str] = Field(default_factory=list, description="Fields carried into the index as-is.")
    deduplicate: bool = Field(True, description="Keep one document per id within a run; list the others as skipped.")
    csv_delimiter: str = ","
    encoding: str = "utf-8"


# --------------------------------------------------------------------------- encoders
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


class SentenceTransformersEncoderConfig(_EncoderBase):
    """A local dense model: a catalogue name or a path to a sentence-transformers model directory."""

    type: Literal["sentence_transformers"] = "sentence_transformers"
    model: str = Field(description="Catalogue name (see `neural-ingest models list`) or a model directory.")
    model_path: str | None = Field(None, description="Explicit directory with the model's weights.")
    models_dir: str | None = Field(None, description="Directory searched for catalogue models by name.")
    device: Literal["cpu", "cuda", "auto"] = "auto"
    normalize: bool | None = Field(None, description="null keeps the model's own normalization.")
    max_seq_length: int | None = Field(None, ge=8, description="null keeps the model's own maximum.")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads; null leaves torch's default.")
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
    def _backend_fits(self) -> "SentenceTransformersEncoderConfig":
        if self.quantize and self.backend == "torch":
            raise ValueError("quantize needs backend onnx or openvino")
        if self.backend != "torch" and self.device == "cuda":
            raise ValueError(f"backend {self.backend} runs on CPU: use device cpu/auto, or backend torch on cuda")
        return self

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
    def _ratio_fits(self) -> "SparsePruneConfig":
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


class NeuralSparseEncoderConfig(_EncoderBase):
    """A local neural sparse (SPLADE-style) model: documents become {token: weight} for rank_features."""

    type: Literal["neural_sparse"] = "neural_sparse"
    model: str = Field(description="Catalogue name (e.g. opensearch-neural-sparse-encoding-doc-v1) or a model directory.")
    model_path: str | None = Field(None, description="Explicit directory with the model's weights.")
    models_dir: str | None = Field(None, description="Directory searched for catalogue models by name.")
    device: Literal["cpu", "cuda", "auto"] = "auto"
    batch_size: int = Field(8, ge=1, le=4096, description="Masked-LM logits are batch x tokens x vocabulary: keep it small.")
    max_seq_length: int | None = Field(None, ge=8, description="null keeps the model's own maximum (512 for BERT).")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads; null leaves torch's default.")
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


# --------------------------------------------------------------------------- remote encoders
class RemoteRetryConfig(_Strict):
    """Retries of 429, 5xx, timeouts, connection errors and malformed JSON, per request."""

    attempts: int = Field(6, ge=1, le=50, description="Tries per request, the first included.")
    initial_backoff: float = Field(0.5, gt=0, description="Seconds before the first retry; doubles each time.")
    max_backoff: float = Field(30.0, gt=0, description="Longest wait between two tries.")
    jitter: float = Field(0.5, ge=0, description="Up to this many random seconds added to each backoff.")
    max_retry_after: float = Field(120.0, gt=0, description="A longer Retry-After from the service is capped to this.")


class RemoteRateLimitConfig(_Strict):
    """Limits shared by every thread of a worker process (and by encoders with the same `key`)."""

    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(
        None, gt=0, description="Estimated tokens (characters / chars_per_token) sent per minute."
    )
    key: str | None = Field(None, description="Encoders with equal keys share one limit; default: the endpoint.")


class _RemoteEncoderBase(_EncoderBase):
    """What every remote encoder kind shares: output, auth, batching, concurrency, timeouts, retries, limits."""

    batch_size: int = Field(
        64, ge=1, le=4096, description="Documents per encode call; split into requests of request_batch_size."
    )
    url: str = Field(description="Service endpoint (base URL).")
    output: Literal["dense", "sparse"] = Field("dense", description="dense vectors (knn_vector) or sparse maps (rank_features).")
    dimension: int | None = Field(
        None, ge=1, description="Expected vector size; null: learnt from the probe request (then probe must be on)."
    )
    similarity: Literal["cosine", "dot", "euclidean"] = Field("cosine", description="Picks the k-NN space type.")
    normalized: bool | None = Field(None, description="Whether the service returns unit vectors (informational).")
    name: str | None = Field(None, description="Model name shown in the summary; default: model / model_id / url.")
    api_key: SecretStr | None = Field(None, description="Sent as `Authorization: Bearer <key>`; use ${ENV}.")
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="Extra request headers (values are secret).")
    verify_certs: bool = True
    ca_certs: str | None = None
    timeout: float = Field(60.0, gt=0, description="Seconds to wait for a response.")
    connect_timeout: float = Field(10.0, gt=0)
    request_batch_size: int = Field(32, ge=1, le=4096, description="Texts per request at most.")
    max_request_chars: int | None = Field(100_000, ge=1, description="Characters per request at most; null: no limit.")
    max_request_tokens: int | None = Field(None, ge=1, description="Estimated tokens per request at most.")
    chars_per_token: float = Field(4.0, gt=0, description="For token estimates (batching and tokens_per_minute).")
    concurrency: int = Field(4, ge=1, le=256, description="Requests in flight at once per worker process.")
    isolate_failures: bool = Field(True, description="Bisect a failing batch so only the failing texts fail.")
    probe: bool = Field(True, description="Send one text at start-up: checks url and key, learns the dimension.")
    retry: RemoteRetryConfig = Field(default_factory=RemoteRetryConfig)
    rate_limit: RemoteRateLimitConfig = Field(default_factory=RemoteRateLimitConfig)

    @property
    def kind(self) -> str:
        return self.output

    @model_validator(mode="after")
    def _dimension_known(self):
        if self.output == "dense" and self.dimension is None and not self.probe:
            raise ValueError("dimension is required when probe is false (the index mapping needs it)")
        return self


class OpenAIEncoderConfig(_RemoteEncoderBase):
    """An OpenAI-compatible embeddings API: POST {url}/embeddings."""

    type: Literal["openai"] = "openai"
    url: str = Field("https://api.openai.com/v1", description="Base URL, e.g. http://127.0.0.1:7997/v1.")
    model: str = Field(description="Model name sent in the request.")
    output: Literal["dense"] = "dense"
    send_dimensions: bool = Field(False, description="Send `dimensions: <dimension>` (text-embedding-3 models).")


class TEIEncoderConfig(_RemoteEncoderBase):
    """text-embeddings-inference: POST {url}/embed (dense) or {url}/embed_sparse (sparse)."""

    type: Literal["tei"] = "tei"
    normalize: bool = Field(True, description="dense: ask the server for unit vectors.")
    truncate: bool = Field(True, description="Ask the server to truncate texts over the model's maximum.")
    vocab_path: str | None = Field(
        None, description="sparse: tokenizer.json / vocab.txt mapping token ids to tokens; null keeps ids as keys."
    )


class OpenSearchMLEncoderConfig(_RemoteEncoderBase):
    """A model deployed in ML Commons (local or remote/connector): POST /_plugins/_ml/models/<id>/_predict."""

    type: Literal["opensearch_ml"] = "opensearch_ml"
    url: str = Field("http://127.0.0.1:9200", description="The OpenSearch cluster.")
    model_id: str
    query_model_id: str | None = Field(None, description="Model for search queries (e.g. a sparse tokenizer); default model_id.")
    username: str | None = None
    password: SecretStr | None = None
    input: Literal["auto", "text_docs", "parameters"] = Field(
        "auto", description="Request shape; auto: parameters for remote (connector) models, text_docs for local ones."
    )
    parameters_key: str = Field("input", description="With input: parameters, the parameter holding the texts.")
    response_path: str | None = Field(None, description="JSONPath to the embeddings; null reads inference_results.")


class HttpEncoderConfig(_RemoteEncoderBase):
    """Any JSON embedding API, described like an ML Commons connector action (request template + result path)."""

    type: Literal["http"] = "http"
    method: Literal["POST", "PUT"] = "POST"
    request_body: str | dict[str, Any] = Field(
        description="JSON template; ${parameters.input} becomes the list of texts, ${parameters.X} / ${credential.X} "
        "come from `parameters` / `credential`."
    )
    parameters: dict[str, Any] = Field(default_factory=dict)
    credential: dict[str, SecretStr] = Field(default_factory=dict, description="Secrets for ${credential.X}; use ${ENV}.")
    pre_process_function: str | None = Field(
        None, description="An ML Commons pre-processing function name: sets which parameter takes the texts."
    )
    post_process_function: str | None = Field(
        None, description="An ML Commons post-processing function name: sets response_path."
    )
    input_parameter: str | None = Field(None, description="The parameter that takes the texts; default input.")
    response_path: str | None = Field(None, description="JSONPath to the embeddings, e.g. $.data[*].embedding.")

    @model_validator(mode="after")
    def _result_mapping(self):
        from neural_ingest.encoders.remote.adapters import POST_PROCESS, PRE_PROCESS
        from neural_ingest.encoders.remote.jsonpath import PathError, parse_path

        if self.pre_process_function and self.pre_process_function not in PRE_PROCESS:
            raise ValueError(f"pre_process_function {self.pre_process_function!r} is not one of {sorted(PRE_PROCESS)}")
        if self.post_process_function and self.post_process_function not in POST_PROCESS:
            raise ValueError(
                f"post_process_function {self.post_process_function!r} is not one of {sorted(POST_PROCESS)}; "
                "give response_path instead"
            )
        if not self.response_path and not self.post_process_function:
            raise ValueError("give response_path (e.g. $.data[*].embedding) or a known post_process_function")
        if self.response_path:
            try:
                parse_path(self.response_path)
            except PathError as e:
                raise ValueError(str(e)) from None
        return self


# Every encoder config class is a member of this union, keyed by its `type` literal.
EncoderConfig = Annotated[
    Union[
        SentenceTransformersEncoderConfig,
        NeuralSparseEncoderConfig,
        OpenSearchMLEncoderConfig,
        OpenAIEncoderConfig,
        TEIEncoderConfig,
        HttpEncoderConfig,
    ],
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- sinks
class KnnConfig(_Strict):
    engine: Literal["lucene", "faiss"] = Field(
        "lucene", description="HNSW engine. nmslib is deprecated in OpenSearch and not offered."
    )
    space_type: Literal["cosinesimil", "innerproduct", "l2"] | None = Field(
        None, description="null derives it from the model's similarity function."
    )
    m: int = Field(16, ge=2, le=512)
    ef_construction: int = Field(128, ge=2, le=4096)


class BulkConfig(_Strict):
    max_docs: int = Field(500, ge=1, description="Documents per bulk request at most.")
    max_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="Bytes per bulk request at most.")
    max_retries: int = Field(8, ge=0, description="Retries of items rejected with 429/503 (back-pressure).")
    initial_backoff: float = Field(0.5, gt=0, description="Seconds before the first retry; doubles each time, jittered.")
    max_backoff: float = Field(30.0, gt=0)
    timeout: float = Field(120.0, gt=0, description="Seconds per bulk request.")
    outage_deadline: float = Field(
        300.0, gt=0, description="Seconds to keep retrying while the cluster is unreachable before failing the batch."
    )
    in_flight: int = Field(
        1, ge=0, le=16, description="Bulk requests sent concurrently on background threads while encoding goes on "
        "(their results are still reported within the bundle); 0: send them in line, one at a time."
    )


class AwsSigV4Config(_Strict):
    """Amazon OpenSearch Service / Serverless: requests signed with the default AWS credential chain."""

    region: str = Field(description="AWS region of the domain or collection, e.g. eu-west-1.")
    service: Literal["es", "aoss"] = Field("es", description="es for OpenSearch Service, aoss for Serverless.")


class OpenSearchSinkConfig(_Strict):
    type: Literal["opensearch"] = "opensearch"
    hosts: list[str] = Field(["http://127.0.0.1:9200"], min_length=1)
    index: str = Field(description="Index to write to; created with a mapping derived from the model when missing.")
    username: str | None = None
    password: SecretStr | None = None
    aws_sigv4: AwsSigV4Config | None = Field(None, description="Sign requests with AWS SigV4 instead of basic auth.")
    verify_certs: bool = Field(True, description="Verify TLS certificates (keep on; give ca_certs for a private CA).")
    ca_certs: str | None = None
    text_field: str = "text"
    store_text: bool = True
    shards: int = Field(1, ge=1)
    replicas: int = Field(0, ge=0)
    bulk_load_settings: bool = Field(
        True, description="When the run creates the index: no replicas (and see bulk_refresh) while loading, the "
        "index's own settings restored (and a refresh) at the end."
    )
    bulk_refresh: Literal["auto", "disable", "keep"] = Field(
        "auto", description="With bulk_load_settings: disable = refresh_interval -1 while loading; keep = leave it; "
        "auto = disable, except for indexes with lucene k-NN fields, whose HNSW graphs build far slower in one "
        "large in-memory segment (measured 1.5x slower at 3k docs, 3x at 12k: docs/benchmark.md)."
    )
    knn: KnnConfig = Field(default_factory=KnnConfig)
    bulk: BulkConfig = Field(default_factory=BulkConfig)
    use_neural_search: bool | None = Field(
        None,
        description="Sparse/hybrid search through the neural-search plugin (neural_sparse query, normalization "
        "search pipeline); false: plain rank_feature queries and client-side fusion; null: when it is installed.",
    )

    @field_validator("index")
    @classmethod
    def _index_name(cls, v: str) -> str:
        if v != v.lower() or v.startswith(("_", "-", "+")) or any(c in v for c in ' ,"*\\/<>|?#'):
            raise ValueError(
                f"{v!r} is not a valid OpenSearch index name: use lowercase, no spaces or , \" * \\ / < > | ? #,"
                " and do not start with _ - +"
            )
        return v

    def describe(self) -> str:
        return f"opensearch {self.hosts[0]}/{self.index}"


class ParquetSinkConfig(_Strict):
    """The embedded default: a local Parquet dataset that `neural-ingest search` can query."""

    type: Literal["parquet"] = "parquet"
    path: str = Field(".neural-ingest/dataset", description="Dataset directory (replaced atomically per run).")
    text_field: str = "text"

    def describe(self) -> str:
        return f"parquet {self.path}"


SinkConfig = Annotated[Union[OpenSearchSinkConfig, ParquetSinkConfig], Field(discriminator="type")]


# --------------------------------------------------------------------------- OpenSearch as a source
class OpenSearchSourceConfig(_Strict):
    """An existing OpenSearch index (or alias, or pattern) as the source, e.g. to re-embed it with a new
    model: read through a point in time, in slices, paged with search_after. Connection fields are the
    sink's (hosts, username/password or aws_sigv4, TLS)."""

    type: Literal["opensearch"] = Field(description="Read documents from an OpenSearch index.")
    hosts: list[str] = Field(["http://127.0.0.1:9200"], min_length=1)
    index: str = Field(description="Index, alias or pattern to read.")
    username: str | None = None
    password: SecretStr | None = None
    aws_sigv4: AwsSigV4Config | None = Field(None, description="Sign requests with AWS SigV4 instead of basic auth.")
    verify_certs: bool = True
    ca_certs: str | None = None
    timeout: float = Field(60.0, gt=0, description="Seconds per search request.")
    query: dict[str, Any] | None = Field(None, description="Query selecting the documents; null: all of them.")
    id_field: str | None = Field("_id", description="_id: the document's own id; a _source field; null: a content hash.")
    text_fields: list[str] = Field(["text"], min_length=1, description="_source fields joined to form the text (dots reach into objects).")
    text_separator: str = "\n\n"
    metadata_fields: list[str] = Field(default_factory=list, description="_source fields carried into the new index.")
    deduplicate: bool = Field(True, description="Keep one document per id (several indices may share ids).")
    page_size: int = Field(500, ge=1, le=10000, description="Documents per search_after page.")
    slices: int | None = Field(
        None, ge=1, le=1024, description="Parallel slices per index; never fewer than its primary shards; null: one per shard."
    )
    keep_alive: str = Field("10m", pattern=r"^\d+[smhd]$", description="Point-in-time keep-alive, renewed on every page.")

    def describe(self) -> str:
        return f"opensearch {self.hosts[0]}/{self.index}"


AnySourceConfig = Annotated[Union[SourceConfig, OpenSearchSourceConfig], Field(discriminator="type")]


# --------------------------------------------------------------------------- nightly reindexing
class ReindexValidationConfig(_Strict):
    """The gate between building a new index and pointing the alias at it."""

    count_tolerance: float = Field(
        0.01, ge=0, le=1, description="Allowed relative difference between the new index's document count and the "
        "source's documents (read - skipped)."
    )
    max_failed: int | None = Field(
        None, ge=0, description="Dead letters allowed; null: the run's error budget (run.max_failed / max_failed_ratio)."
    )
    sample_queries: int = Field(
        20, ge=0, le=1000, description="Documents sampled for self-retrieval (each must find itself); 0: off."
    )
    top_k: int = Field(10, ge=1, le=1000, description="A sampled document must be among this many hits.")
    min_self_retrieval: float = Field(0.9, ge=0, le=1, description="Share of sampled documents that must find themselves.")
    query_vectors: Literal["encode", "stored"] = Field(
        "encode", description="encode: the sampled text is encoded again (checks vector <-> text); stored: its stored vector."
    )


class ReindexConfig(_Strict):
    """`neural-ingest reindex`: blue/green builds behind an alias, incremental re-embedding, one run at a time."""

    alias: str | None = Field(
        None, description="Alias the search side reads; null: sink.index. Each run builds <alias>-<UTC timestamp>."
    )
    keep_last: int = Field(
        3, ge=1, description="Indices <alias>-* kept after a swap; the live one and its rollback target are always kept."
    )
    incremental: bool = Field(
        True, description="Reuse the live index's vectors for documents whose text and model identity are unchanged."
    )
    validation: ReindexValidationConfig = Field(default_factory=ReindexValidationConfig)
    lock_ttl: float = Field(
        600.0, ge=5, description="Seconds the run lock lives without renewal (renewed every lock_ttl/3 while running)."
    )
    lock_index: str = Field("neural-ingest-locks", description="Index holding the locks (one document per alias).")

    @field_validator("alias", "lock_index")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and (v != v.lower() or v.startswith(("_", "-", "+", ".")) or any(c in v for c in ' ,"*\\/<>|?#:')):
            raise ValueError(f"{v!r} is not a valid OpenSearch index/alias name: lowercase, no spaces or , \" * \\ / < > | ? # :")
        return v


class DeadLetterConfig(_Strict):
    path: str = Field(".neural-ingest/dead-letters", description="Directory for dead-letter JSONL files.")


class RunConfig(_Strict):
    name: str = "neural-ingest"
    progress_every_seconds: float = Field(10.0, gt=0)
    max_failed: int | None = Field(None, ge=0, description="Error budget: fail the run past this many failed records.")
    max_failed_ratio: float | None = Field(
        0.01, ge=0, le=1, description="Error budget: fail the run when failed/read exceeds this; null for no limit."
    )


class ChunkingConfig(_Strict):
    """Long documents: truncate at the model's maximum (counted in the summary), or split into chunks
    that every encoder embeds, stored nested in the document or as separate documents. docs/chunking.md."""

    mode: Literal["truncate", "chunk"] = Field("truncate", description="truncate: one vector per document (text past "
                                               "the model's maximum is not embedded); chunk: one vector per chunk.")
    algorithm: Literal["fixed_token_length", "delimiter"] = "fixed_token_length"
    token_limit: int | None = Field(
        None, ge=1, description="fixed_token_length: model tokens per chunk; null: the model's max_seq_length "
        "less its special tokens (the smallest over the local encoders)."
    )
    overlap_rate: float = Field(0.0, ge=0.0, le=0.5, description="Share of token_limit repeated from the previous chunk.")
    delimiter: str = Field("\n\n", min_length=1, description="delimiter: split after each occurrence (kept in the chunk).")
    max_chunk_limit: int = Field(
        100, ge=-1, description="Chunks per document at most; the last one takes the rest of the text. -1: no limit."
    )
    storage: Literal["nested", "separate"] = Field(
        "nested", description="nested: chunks inside the document (nested field); separate: one document per chunk "
        "with parent_id (OpenSearch)."
    )
    field: str = Field("chunks", description="nested: the nested field's name.")
    tokenizer: str | None = Field(
        None, description="Tokenizer that counts tokens: an encoder's field, or a model name / directory; null: the "
        "first local encoder's."
    )
    models_dir: str | None = Field(None, description="Directory searched for `tokenizer` by name.")

    @field_validator("max_chunk_limit")
    @classmethod
    def _limit(cls, v: int) -> int:
        if v == 0:
            raise ValueError("max_chunk_limit must be a positive integer, or -1 for no limit")
        return v

    @field_validator("field")
    @classmethod
    def _field_name(cls, v: str) -> str:
        if not v or "." in v or v.startswith("_"):
            raise ValueError(f"{v!r}: the chunk field needs a plain name (no dots, not starting with _)")
        return v


# --------------------------------------------------------------------------- root
class PipelineConfig(_Strict):
    run: RunConfig = Field(default_factory=RunConfig)
    source: AnySourceConfig
    encoders: list[EncoderConfig] = Field(min_length=1)
    sink: SinkConfig = Field(default_factory=ParquetSinkConfig)
    dead_letter: DeadLetterConfig = Field(default_factory=DeadLetterConfig)
    chunking: ChunkingConfig = Field(default_factory=ChunkingConfig)
    reindex: ReindexConfig | None = Field(None, description="`neural-ingest reindex` settings; null: the defaults.")
    beam_args: list[str] = Field(default_factory=list, description="Extra Beam pipeline options, e.g. --runner.")

    @model_validator(mode="before")
    @classmethod
    def _single_encoder(cls, data: Any) -> Any:
        # `encoder:` is the common one-model case; it means a list of one.
        if isinstance(data, dict) and "encoder" in data:
            if "encoders" in data:
                raise ValueError("give either `encoder` or `encoders`, not both")
            data = dict(data)
            data["encoders"] = [data.pop("encoder")]
        return data

    @model_validator(mode="after")
    def _fields_unique(self) -> "PipelineConfig":
        fields = [encoder_field(e) for e in self.encoders]
        if len(set(fields)) != len(fields):
            raise ValueError(f"encoders write to the same field {fields}: give each a distinct `field`")
        return self

    @model_validator(mode="after")
    def _chunk_fields_free(self) -> "PipelineConfig":
        c = self.chunking
        if c.mode != "chunk":
            return self
        taken = {*(encoder_field(e) for e in self.encoders), *self.source.metadata_fields, getattr(self.sink, "text_field", "text")}
        own = {c.field} if c.storage == "nested" else {"parent_id", "chunk_index", "chunk_start", "chunk_end"}
        if own & taken:
            raise ValueError(f"chunking (storage {c.storage}) writes {sorted(own & taken)}, already an encoder, metadata or text field")
        return self


def encoder_field(cfg: _EncoderBase) -> str:
    """The index field an encoder writes to."""
    if cfg.field:
        return cfg.field
    return "embedding" if getattr(cfg, "kind", "dense") == "dense" else "sparse_embedding"


# --------------------------------------------------------------------------- loading
def interpolate_env(value: Any, *, where: str = "") -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {k: interpolate_env(v, where=f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate_env(v, where=f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def _sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable {name} is not set; export {name}=... or write ${{{name}:-default}}")

    return _ENV_PATTERN.sub(_sub, value)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML scalars, so 64 is an int)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.path=value, e.g. --set encoders.0.batch_size=64")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw else ""
        node: Any = data
        parts = key.split(".")
        for part in parts[:-1]:
            if isinstance(node, list):
                node = node[int(part)]
            else:
                if part == "encoders" and "encoder" in node and "encoders" not in node:
                    node["encoders"] = [node.pop("encoder")]
                node = node.setdefault(part, {})
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return data


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: the config is not valid:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not (isinstance(p, str) and p in _discriminator_tags()))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field: remove it or check its spelling"
        elif e["type"] == "missing":
            msg = "required field is missing: add it"
        elif e["type"] == "literal_error":
            msg = f"{msg} (got {e.get('input')!r})"
        elif e["type"] == "union_tag_invalid":
            # The message names the tag; the input is the whole block, which may hold a password.
            msg = f"unknown type {e.get('ctx', {}).get('tag')!r}: expected one of {e.get('ctx', {}).get('expected_tags')}"
        lines.append(f"  - {loc or '(root)'}: {msg}")
    return "\n".join(lines)


def _discriminator_tags() -> set[str]:
    """The `type` values of every union member: pydantic puts them in error locations; users don't write them."""
    import typing

    tags: set[str] = set()
    for union in (EncoderConfig, SinkConfig, AnySourceConfig):
        inner = typing.get_args(union)[0]
        for member in typing.get_args(inner) or (inner,):
            tags.update(typing.get_args(member.model_fields["type"].annotation))
    return tags


def parse_config(data: dict[str, Any], *, source: str = "config") -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a YAML config, interpolate ``${ENV}``, apply ``--set`` overrides and validate.

    Relative source/sink paths are resolved against the current directory, as users type them.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    data = apply_overrides(data, overrides or [])
    data = interpolate_env(data)
    return parse_config(data, source=str(path))
