"""Encoders behind an HTTP service (openai, tei, opensearch_ml, http), and EncoderConfig: the union of every kind."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import Field, SecretStr, model_validator

from neural_ingest.config.base import _Strict
from neural_ingest.config.encoders import (
    HashEncoderConfig,
    NeuralSparseEncoderConfig,
    SentenceTransformersEncoderConfig,
    _EncoderBase,
)


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
    def _dimension_known(self) -> Self:
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
    def _result_mapping(self) -> Self:
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
    SentenceTransformersEncoderConfig
    | NeuralSparseEncoderConfig
    | OpenSearchMLEncoderConfig
    | OpenAIEncoderConfig
    | TEIEncoderConfig
    | HttpEncoderConfig
    | HashEncoderConfig,
    Field(discriminator="type"),
]
