"""Typed run configuration: YAML in, validated pydantic models out.

Secrets never live in the YAML itself: ``${ENV}`` (or ``${ENV:-default}``) is replaced from the
environment when the file is loaded, and fields holding secrets are ``SecretStr`` so they print as
``**********`` in logs, errors and summaries.

A package rather than one module so that each config section lives in a small file of its own
(base, sources, encoders, remote_encoders, sinks, pipeline, loading); every name is re-exported
here, so ``from neural_ingest.config import X`` is the one import to use.
"""
from __future__ import annotations

from neural_ingest.config.base import ConfigError
from neural_ingest.config.encoders import (
    BatchingConfig,
    HashEncoderConfig,
    NeuralSparseEncoderConfig,
    SentenceTransformersEncoderConfig,
    SparsePruneConfig,
    encoder_field,
)
from neural_ingest.config.loading import apply_overrides, interpolate_env, load_config, parse_config
from neural_ingest.config.pipeline import (
    ChunkingConfig,
    DeadLetterConfig,
    PipelineConfig,
    ReindexConfig,
    ReindexValidationConfig,
    RunConfig,
)
from neural_ingest.config.remote_encoders import (
    EncoderConfig,
    HttpEncoderConfig,
    OpenAIEncoderConfig,
    OpenSearchMLEncoderConfig,
    RemoteRateLimitConfig,
    RemoteRetryConfig,
    TEIEncoderConfig,
)
from neural_ingest.config.sinks import (
    AwsSigV4Config,
    BulkConfig,
    KnnConfig,
    OpenSearchSinkConfig,
    ParquetSinkConfig,
    RecallConfig,
    SinkConfig,
)
from neural_ingest.config.sources import AnySourceConfig, OpenSearchSourceConfig, SourceConfig

__all__ = [
    "AnySourceConfig",
    "AwsSigV4Config",
    "BatchingConfig",
    "BulkConfig",
    "ChunkingConfig",
    "ConfigError",
    "DeadLetterConfig",
    "EncoderConfig",
    "HashEncoderConfig",
    "HttpEncoderConfig",
    "KnnConfig",
    "NeuralSparseEncoderConfig",
    "OpenAIEncoderConfig",
    "OpenSearchMLEncoderConfig",
    "OpenSearchSinkConfig",
    "OpenSearchSourceConfig",
    "ParquetSinkConfig",
    "PipelineConfig",
    "RecallConfig",
    "ReindexConfig",
    "ReindexValidationConfig",
    "RemoteRateLimitConfig",
    "RemoteRetryConfig",
    "RunConfig",
    "SentenceTransformersEncoderConfig",
    "SinkConfig",
    "SourceConfig",
    "SparsePruneConfig",
    "TEIEncoderConfig",
    "apply_overrides",
    "encoder_field",
    "interpolate_env",
    "load_config",
    "parse_config",
]
