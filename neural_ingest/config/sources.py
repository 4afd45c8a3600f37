"""Where documents come from: files (jsonl, csv, parquet, text) or an existing OpenSearch index."""
from __future__ import annotations

import codecs
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator

from neural_ingest.config.base import _Strict
from neural_ingest.config.sinks import AwsSigV4Config
from neural_ingest.redact import redact_url


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
    deduplicate: bool = Field(
        True,
        description=(
            "Keep one document per id within a run: the last in source order, as an upsert would; list the others as skipped."
        ),
    )
    csv_delimiter: str = ","
    encoding: str = Field("utf-8", description="Text encoding of jsonl / csv / text files (a Python codec name).")

    @field_validator("encoding")
    @classmethod
    def _known_codec(cls, v: str) -> str:
        try:
            known = getattr(codecs.lookup(v), "_is_text_encoding", True)  # rot13, base64...: not bytes <-> text
        except LookupError:
            known = False
        if not known:
            raise ValueError(f"unknown encoding {v!r}: use a Python codec name such as utf-8, latin-1 or cp1252")
        return v


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
    text_fields: list[str] = Field(
        ["text"], min_length=1, description="_source fields joined to form the text (dots reach into objects)."
    )
    text_separator: str = "\n\n"
    metadata_fields: list[str] = Field(default_factory=list, description="_source fields carried into the new index.")
    deduplicate: bool = Field(True, description="Keep one document per id (several indices may share ids).")
    page_size: int = Field(500, ge=1, le=10000, description="Documents per search_after page.")
    slices: int | None = Field(
        None, ge=1, le=1024, description="Parallel slices per index; never fewer than its primary shards; null: one per shard."
    )
    keep_alive: str = Field("10m", pattern=r"^\d+[smhd]$", description="Point-in-time keep-alive, renewed on every page.")

    def describe(self) -> str:
        return f"opensearch {redact_url(self.hosts[0])}/{self.index}"


AnySourceConfig = Annotated[SourceConfig | OpenSearchSourceConfig, Field(discriminator="type")]
