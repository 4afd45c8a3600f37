"""The root PipelineConfig and its run-wide sections: run, dead letters, chunking, reindex."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from neural_ingest.config.base import _Strict
from neural_ingest.config.encoders import encoder_field
from neural_ingest.config.remote_encoders import EncoderConfig
from neural_ingest.config.sinks import ParquetSinkConfig, SinkConfig
from neural_ingest.config.sources import AnySourceConfig


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
    min_recall: float | None = Field(
        0.9, ge=0, le=1, description="recall@k of a plain client knn query on the new index (the run's recall check, "
        "sink.recall) must reach this; below it the alias stays (exit 4). The defaults measure 0.998, on_disk 32x 0.98, "
        "lucene 0.94-0.97 (docs/benchmark.md). null: off; not applied when the check did not run (sink.recall.sample_queries "
        "0, chunked index).",
    )
    max_deleted_ratio: float = Field(
        0.1, ge=0, le=1, description="Shrink guard: share of the live index's documents that may vanish in one run (the "
        "new index's count against the live one's); beyond it the alias stays (exit 4) unless --allow-shrink. 1: off."
    )
    min_documents: int = Field(
        1, ge=0, description="Shrink guard: the new index must hold at least this many documents (also on the first "
        "run); waived by --allow-shrink. 0: off."
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
    def _fields_unique(self) -> PipelineConfig:
        fields = [encoder_field(e) for e in self.encoders]
        if len(set(fields)) != len(fields):
            raise ValueError(f"encoders write to the same field {fields}: give each a distinct `field`")
        return self

    @model_validator(mode="after")
    def _chunk_fields_free(self) -> PipelineConfig:
        c = self.chunking
        if c.mode != "chunk":
            return self
        text_field = getattr(self.sink, "text_field", "text")
        taken = {*(encoder_field(e) for e in self.encoders), *self.source.metadata_fields, text_field}
        own = {c.field} if c.storage == "nested" else {"parent_id", "chunk_index", "chunk_start", "chunk_end"}
        if own & taken:
            raise ValueError(
                f"chunking (storage {c.storage}) writes {sorted(own & taken)}, already an encoder, metadata or text field"
            )
        return self
