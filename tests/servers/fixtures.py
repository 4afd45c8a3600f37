"""Fixtures for the loopback embedding server; import them into a test module to use them."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from servers.embedding_server import EmbeddingServer, sentence_transformer_encoder, token_count_sparse


@pytest.fixture(scope="module")
def embedding_server(st_model) -> EmbeddingServer:
    """A fault-free server with the real all-MiniLM-L6-v2 behind OpenAI and TEI routes."""
    with EmbeddingServer(sentence_transformer_encoder(st_model), sparse=token_count_sparse(st_model.tokenizer)) as s:
        yield s


@pytest.fixture
def make_server(st_model) -> Callable[..., EmbeddingServer]:
    """Start a server with options (api_key, max_batch, slow_seconds...); stopped after the test."""
    started: list[EmbeddingServer] = []

    def _make(**kw: Any) -> EmbeddingServer:
        s = EmbeddingServer(sentence_transformer_encoder(st_model), sparse=token_count_sparse(st_model.tokenizer), **kw)
        started.append(s.start())
        return s

    yield _make
    for s in started:
        s.stop()


# Small waits so fault tests stay quick; no test asserts on time.
FAST_RETRY = {"attempts": 3, "initial_backoff": 0.02, "max_backoff": 0.1, "jitter": 0.02, "max_retry_after": 1.0}
