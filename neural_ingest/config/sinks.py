"""Where embeddings go: an OpenSearch index (k-NN, bulk loading, auth) or the local Parquet dataset."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from neural_ingest.config.base import _Strict
from neural_ingest.redact import redact_url

KNN_MAX_K = 10_000  # OpenSearch's largest k for a knn query


class KnnConfig(_Strict):
    engine: Literal["lucene", "faiss"] | None = Field(
        None, description="HNSW engine; null: faiss, whose search honours ef_search for every query, or lucene where the "
        "nodes lack the faiss libraries (sinks/knn_support.py). nmslib is deprecated in OpenSearch and not offered."
    )
    space_type: Literal["cosinesimil", "innerproduct", "l2"] | None = Field(
        None, description="null derives it from the model's similarity function."
    )
    m: int = Field(16, ge=2, le=512)
    ef_construction: int = Field(128, ge=2, le=4096)
    ef_search: int | None = Field(
        100, ge=2, le=KNN_MAX_K, description="HNSW search queue of every query on the index, so a client's plain `k: 10` "
        "query searches 100 candidates, not 10: faiss's method parameter (fixed when the index is built) and the index "
        "setting index.knn.algo_param.ef_search (honoured by lucene on OpenSearch 3.x, not 2.19); null: engine defaults.",
    )
    mode: Literal["in_memory", "on_disk"] | None = Field(
        None, description="on_disk: compressed vectors in memory, full ones on disk for rescoring (faiss on 2.x); "
        "queries need rescore to get recall back (docs/benchmark.md).",
    )
    compression_level: Literal["1x", "2x", "4x", "8x", "16x", "32x"] | None = Field(
        None, description="Memory compression of the vectors (with mode, or alone); what an engine accepts depends on "
        "the OpenSearch version, checked before the run.",
    )
    encoder: Literal["sq_fp16"] | None = Field(
        None, description="faiss scalar quantisation to fp16: half the graph's memory, recall almost unchanged."
    )
    search_candidates: int = Field(
        100, ge=1, le=KNN_MAX_K, description="Neighbours the approximate search looks for (the knn query's k) before "
        "`size` keeps the best -k. Lucene uses k as its HNSW search queue, so asking for k=3 can miss a document "
        "that is truly 2nd; more candidates: better recall, slower queries. Scores are unchanged.",
    )

    @model_validator(mode="after")
    def _combinations(self) -> KnnConfig:
        if self.encoder == "sq_fp16" and self.engine == "lucene":
            raise ValueError(f"sink.knn.encoder sq_fp16 is a faiss encoder: set sink.knn.engine: faiss (not {self.engine})")
        if self.encoder and self.compression_level not in (None, "1x", "2x"):
            raise ValueError(
                f"sink.knn.encoder {self.encoder} and compression_level {self.compression_level} both quantise: keep one"
            )
        return self

    def window(self, k: int) -> int:
        """The knn query's k for a search that returns ``k`` hits."""
        return min(KNN_MAX_K, max(k, self.search_candidates))


class RecallConfig(_Strict):
    """The recall check after every OpenSearch build (neural_ingest/sinks/recall.py)."""

    sample_queries: int = Field(
        100, ge=0, le=KNN_MAX_K, description="Held-out queries: the first sentence of as many sampled documents (at most a "
        "tenth of the index, at least 20; encoding them is the check's main cost); 0 turns the check off."
    )
    k: int = Field(10, ge=1, le=KNN_MAX_K, description="The k of the plain client query measured (recall@k).")
    queries_path: str | None = Field(None, description="JSONL file of query texts ({\"text\": ...} a line) instead of "
                                     "first sentences.")
    seed: int = Field(0, description="Seed of the document sample.")


class BulkConfig(_Strict):
    max_docs: int = Field(500, ge=1, description="Documents per bulk request at most.")
    max_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="Bytes per bulk request at most.")
    max_retries: int = Field(8, ge=0, description="Retries of items rejected with 429/503 (back-pressure).")
    initial_backoff: float = Field(0.5, gt=0, description="Seconds before the first retry; doubles each time, jittered.")
    max_backoff: float = Field(30.0, gt=0)
    timeout: float = Field(120.0, gt=0, description="Seconds per bulk request.")
    refresh_timeout: float = Field(
        1800.0, gt=0, description="Seconds to wait for the refresh that makes a load searchable: faiss and lucene build "
        "their HNSW graphs then, minutes for millions of vectors on a small node.",
    )
    outage_deadline: float = Field(
        300.0, gt=0, description="Seconds to keep retrying while the cluster does not answer at all (not even a health "
        "check) before failing the batch with reason unavailable."
    )
    busy_deadline: float = Field(
        1800.0, gt=0, description="Seconds to keep retrying a bulk request that times out (or gets 429/502/503/504) while "
        "the cluster still answers a health check: a busy node (e.g. building a k-NN graph at a flush), not an outage, "
        "so outage_deadline is not spent. Counted from the first such failure until a request succeeds; then the batch "
        "fails with reason busy. Bounds the wait on a wedged node."
    )
    in_flight: int = Field(
        2, ge=0, le=16, description="Bulk requests sent concurrently on background threads while encoding goes on "
        "(their results are still reported within the bundle); 0: send them in line, one at a time. Two keep a "
        "shard's indexing busy while the other request travels (1.65x the indexing rate of one on a 2-core node, "
        "docs/benchmark.md)."
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
    recall: RecallConfig = Field(default_factory=RecallConfig)
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
        return f"opensearch {redact_url(self.hosts[0])}/{self.index}"


class ParquetSinkConfig(_Strict):
    """The embedded default: a local Parquet dataset that `neural-ingest search` can query."""

    type: Literal["parquet"] = "parquet"
    path: str = Field(".neural-ingest/dataset", description="Dataset directory (replaced atomically per run).")
    text_field: str = "text"

    def describe(self) -> str:
        return f"parquet {self.path}"


SinkConfig = Annotated[OpenSearchSinkConfig | ParquetSinkConfig, Field(discriminator="type")]
