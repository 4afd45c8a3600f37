"""neural-ingest's stable Python API: its OpenSearch sink and encoders as Beam transforms for your own pipeline.

Beam's Python SDK has no OpenSearch sink. These transforms bring neural-ingest's to any pipeline, without the
CLI or a YAML file: bulk requests bounded by document count and bytes, per-item 429 retry with jitter, 413
splitting, outage and busy-node deadlines, and a dead letter with a reason for every document that does not
land (never a crash). Counts are Beam metrics in the ``neural_ingest`` namespace: ``indexed``,
``failed.<stage>.<reason>``, ``skipped.<reason>``, ``encoded.<field>``, ``retried.index.*``.

The names in ``__all__`` (their arguments and outputs) are the stable API; everything else in
``neural_ingest`` is internal and may change in any release. Arguments that take settings reuse the CLI's
config models (``neural_ingest.config``), so every default is the CLI's.

    import apache_beam as beam
    from neural_ingest.beam import WriteToOpenSearch

    with beam.Pipeline() as p:
        result = (p | beam.Create([{"id": "1", "title": "hello"}])
                    | WriteToOpenSearch(index="docs", hosts=["http://localhost:9200"]))
        result.failed | beam.Map(print)  # DeadLetters: stage, error_type, message, record
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, cast

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from neural_ingest.config import (
    ConfigError,
    EncoderConfig,
    NeuralSparseEncoderConfig,
    OpenSearchSinkConfig,
    SentenceTransformersEncoderConfig,
    SourceConfig,
    encoder_field,
)
from neural_ingest.model_info import Vector, as_sparse
from neural_ingest.records import Document
from neural_ingest.transforms.prepare import PrepareFn

__all__ = ["DenseModelHandler", "EmbedAndIndex", "NeuralSparseModelHandler", "WriteResult", "WriteToOpenSearch"]


class WriteResult(NamedTuple):
    """What :class:`WriteToOpenSearch` and :class:`EmbedAndIndex` return.

    - ``indexed``: the id of every document OpenSearch accepted;
    - ``failed``: a ``neural_ingest.records.DeadLetter`` for every input that did not land (``stage``,
      ``error_type``, ``message``, ``record``, ``doc_id``, ``status``, ``attempts``; ``to_json(run_id)`` writes it);
    - ``skipped``: DeadLetters of inputs left out on purpose (EmbedAndIndex: empty text); empty for WriteToOpenSearch.

    Every input is in exactly one of the three.

        result = docs | WriteToOpenSearch(index="docs")
        result.failed | beam.Map(lambda d: d.to_json("run-1")) | beam.io.WriteToText("dead-letters")
    """

    indexed: beam.PCollection[Any]
    failed: beam.PCollection[Any]
    skipped: beam.PCollection[Any]


def _config(cls: type, where: str, **fields: Any) -> Any:
    """``cls(**fields)``, None values left to the model's defaults; a bad value: one line naming the argument."""
    from pydantic import ValidationError

    try:
        return cls(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as err:
        e = err.errors()[0]
        loc = ".".join(str(p) for p in e["loc"])
        raise ConfigError(f"{where}: argument {loc}: {e['msg']}") from None


class WriteToOpenSearch(beam.PTransform[Any, Any]):
    """Write dicts (or neural-ingest ``Document`` records) to an OpenSearch index with neural-ingest's bulk writer.

    A dict is indexed as it is, with ``_id`` = its ``id_field`` value; one without an id (or whose id or values
    have no JSON form) becomes a dead letter with the reason, never a crash. A ``Document`` is indexed as the CLI
    indexes it (metadata at the top level, ``text``, one field per vector). Returns a :class:`WriteResult`.

    ``text_field`` names the field a Document's text goes to (default ``text``); it changes nothing for dicts.
    Settings left as None keep the CLI's defaults (``neural_ingest.config.OpenSearchSinkConfig`` / ``BulkConfig``).
    The password is read from the environment variable ``password_env`` when the pipeline is built, never passed
    as text; ``aws_region`` signs requests with SigV4 instead (Amazon OpenSearch Service, or ``aws_service="aoss"``).
    The index is not created: OpenSearch's dynamic mapping applies, or create it first with the mapping you need
    (``EmbedAndIndex`` creates a k-NN mapping from its models).

        with beam.Pipeline() as p:
            result = (p | beam.Create([{"id": "a1", "title": "Hello", "year": 2024}])
                        | WriteToOpenSearch(index="articles", hosts=["https://search.example:9200"],
                                            username="ingest", password_env="OPENSEARCH_PASSWORD"))
            _ = result.failed | beam.Map(print)
    """

    def __init__(
        self,
        index: str,
        hosts: Sequence[str] | str | None = None,
        *,
        id_field: str = "id",
        username: str | None = None,
        password_env: str | None = None,
        aws_region: str | None = None,
        aws_service: str = "es",
        ca_certs: str | None = None,
        verify_certs: bool = True,
        text_field: str | None = None,
        max_docs: int | None = None,
        max_bytes: int | None = None,
        max_retries: int | None = None,
        initial_backoff: float | None = None,
        timeout: float | None = None,
        outage_deadline: float | None = None,
        busy_deadline: float | None = None,
        in_flight: int | None = None,
        progress_every: float = 10.0,
    ):
        super().__init__()
        from neural_ingest.config import AwsSigV4Config, BulkConfig

        where = f"WriteToOpenSearch(index={index!r})"
        password = None
        if password_env is not None:
            password = os.environ.get(password_env)
            if password is None:
                raise ConfigError(f"{where}: password_env {password_env} is not set: export it before building the pipeline")
        bulk = _config(BulkConfig, where, max_docs=max_docs, max_bytes=max_bytes, max_retries=max_retries,
                       initial_backoff=initial_backoff, timeout=timeout, outage_deadline=outage_deadline,
                       busy_deadline=busy_deadline, in_flight=in_flight)
        aws = _config(AwsSigV4Config, where, region=aws_region, service=aws_service) if aws_region else None
        self.config: OpenSearchSinkConfig = _config(
            OpenSearchSinkConfig, where, index=index, hosts=[hosts] if isinstance(hosts, str) else hosts and list(hosts),
            username=username, password=password, aws_sigv4=aws, ca_certs=ca_certs, verify_certs=verify_certs,
            text_field=text_field, bulk=bulk,
        )
        if not id_field:
            raise ConfigError(f"{where}: id_field must name the field holding each record's id")
        self.id_field = id_field
        self.progress_every = progress_every

    def expand(self, records: beam.PCollection[Any]) -> WriteResult:
        from neural_ingest.transforms.counters import DEAD_LETTER
        from neural_ingest.transforms.write_opensearch import WriteToOpenSearch as _Write

        to_documents = beam.ParDo(_RecordToDocumentFn(self.id_field)).with_outputs(DEAD_LETTER, main="documents")
        docs = records | "ToDocuments" >> to_documents
        written = docs.documents | "Write" >> _Write(self.config, [], self.progress_every, emit_ids=True)
        failed = (docs[DEAD_LETTER], written[DEAD_LETTER]) | "Failed" >> beam.Flatten()
        return WriteResult(written["indexed"], failed, records.pipeline | "NoneSkipped" >> beam.Create([]))


class _RecordToDocumentFn(beam.DoFn):
    """dict -> Document with the dict as its whole source (text None: nothing added); a Document passes."""

    def __init__(self, id_field: str):
        self.id_field = id_field

    def process(self, record: Any) -> Iterable[Any]:
        from neural_ingest.transforms.prepare import record_id
        from neural_ingest.transforms.write_opensearch import dead_letter

        if isinstance(record, Document):
            yield record
            return
        if not isinstance(record, dict):
            yield dead_letter(record, "not_an_object", f"expected a dict or a Document, got {type(record).__name__}")
            return
        doc_id, problem = record_id(record, self.id_field)
        if problem:
            yield dead_letter(record, *problem)
            return
        yield Document(id=doc_id, text=None, metadata=record, source=record)  # type: ignore[arg-type]


class _EncoderModelHandler(ModelHandler[Any, Any, Any]):
    """A neural-ingest encoder as a Beam ModelHandler: str -> PredictionResult(text, vector, model name)."""

    def __init__(
        self,
        config: Any,
        *,
        min_batch_size: int | None = None,
        max_batch_size: int | None = None,
        max_batch_duration_secs: int | None = None,
        large_model: bool = False,
        model_copies: int | None = None,
    ):
        from neural_ingest.encoders import make_encoder

        # RunInference batches in arrival order: the encoder's batch_size as a fixed batch, unless overridden.
        n = config.batch_size
        super().__init__(
            min_batch_size=n if min_batch_size is None else min_batch_size,
            max_batch_size=n if max_batch_size is None else max_batch_size,
            max_batch_duration_secs=max_batch_duration_secs,
            large_model=large_model,
            model_copies=model_copies,
        )
        self.config = config
        self._encoder = make_encoder(config)

    def load_model(self) -> Any:
        """The process-wide shared model (one per worker process, also shared with EmbedAndIndex's encode step)."""
        return self._encoder.acquire()

    def _vectors(self, model: Any, texts: list[str]) -> list[Vector]:
        return self._encoder.encode(model, texts)

    def run_inference(
        self, batch: Sequence[str], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        texts = list(batch)
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(
                    f"{type(self).__name__} encodes str elements, got {type(t).__name__}: map your records to their text "
                    "(or key them, with KeyedModelHandler)"
                )
        vectors = self._vectors(model, texts) if texts else []
        return [PredictionResult(t, v, model_id=self.config.model) for t, v in zip(texts, vectors)]

    def get_num_bytes(self, batch: Sequence[str]) -> int:
        return sum(len(t.encode("utf-8")) for t in batch if isinstance(t, str))

    def get_metrics_namespace(self) -> str:
        return "neural_ingest.RunInference"

    def validate_inference_args(self, inference_args: dict[str, Any] | None) -> None:
        if inference_args:
            raise ValueError(
                f"{type(self).__name__} takes no inference_args (got {sorted(inference_args)}): set options on its config"
            )


class DenseModelHandler(_EncoderModelHandler):
    """A local sentence-transformers model (e.g. all-MiniLM-L6-v2) for ``RunInference``: text -> float32 vector.

    ``model`` is a catalogue name, a model directory, or a full ``SentenceTransformersEncoderConfig`` (every
    option of the CLI's encoder block: backend onnx/openvino, quantize...). Weights come from local disk only.
    Batches are the encoder's ``batch_size`` (``batch_elements_kwargs``); ``min_batch_size`` /
    ``max_batch_size`` / ``max_batch_duration_secs`` override Beam's batching. For keyed input
    ``(key, text)``, wrap it: ``KeyedModelHandler(DenseModelHandler(...))``.

        from apache_beam.ml.inference.base import RunInference
        vectors = texts | RunInference(DenseModelHandler("all-MiniLM-L6-v2", device="cpu"))
        # each a PredictionResult: .example is the text, .inference its numpy vector
    """

    def __init__(
        self,
        model: str | SentenceTransformersEncoderConfig,
        *,
        model_path: str | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        normalize: bool | None = None,
        max_seq_length: int | None = None,
        **batching: Any,
    ):
        if not isinstance(model, SentenceTransformersEncoderConfig):
            model = _config(
                SentenceTransformersEncoderConfig,
                "DenseModelHandler",
                model=model,
                model_path=model_path,
                device=device,
                batch_size=batch_size,
                normalize=normalize,
                max_seq_length=max_seq_length,
            )
        super().__init__(model, **batching)


class NeuralSparseModelHandler(_EncoderModelHandler):
    """A local neural sparse model (OpenSearch's opensearch-neural-sparse-encoding-*) for ``RunInference``:
    text -> ``{token: weight}`` ready for a ``rank_features`` field (zero weights dropped, the config's pruning
    applied). ``task="query"`` encodes search queries the way the model family expects instead of documents.

        vectors = texts | RunInference(NeuralSparseModelHandler("opensearch-neural-sparse-encoding-doc-v3-distill",
                                                                models_dir="/models"))
    """

    def __init__(
        self,
        model: str | NeuralSparseEncoderConfig,
        *,
        model_path: str | None = None,
        models_dir: str | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        task: str = "document",
        **batching: Any,
    ):
        if task not in ("document", "query"):
            raise ConfigError(f"NeuralSparseModelHandler: task {task!r}: use 'document' or 'query'")
        if not isinstance(model, NeuralSparseEncoderConfig):
            model = _config(
                NeuralSparseEncoderConfig,
                "NeuralSparseModelHandler",
                model=model,
                model_path=model_path,
                models_dir=models_dir,
                device=device,
                batch_size=batch_size,
            )
        super().__init__(model, **batching)
        self.task = task

    def _vectors(self, model: Any, texts: list[str]) -> list[Vector]:
        from neural_ingest.encoders.sparse_weights import drop_absent

        maps = self._encoder.encode_queries(model, texts) if self.task == "query" else self._encoder.encode(model, texts)
        return [drop_absent(as_sparse(m)) for m in maps]


_LOADED: dict[str, Any] = {}  # models EmbedAndIndex loaded on the driver, held so in-process workers reuse them


class EmbedAndIndex(beam.PTransform[Any, Any]):
    """Encode dicts (or ``Document`` records) with one or more encoders and index them: the CLI's encode and
    write steps as one composite for your own pipeline.

    A dict's ``text_fields`` (joined by ``text_separator``) are encoded, its ``id_field`` is the ``_id`` and its
    ``metadata_fields`` are indexed beside the text and vectors, with the CLI's rules (a record without an id or
    text, or with metadata that has no JSON form: a dead letter; empty text: skipped). Each encoder writes the
    field its config names (``field``; default ``embedding`` / ``sparse_embedding``). Documents that fail to
    encode or index are dead letters. Returns a :class:`WriteResult`.

    With ``create_index`` (default) the models are loaded once while the pipeline is built to learn their
    dimension and similarity, and a missing index is created with the k-NN / rank_features mapping the CLI
    would create (one line naming the problem if the existing one conflicts). ``sink`` is a
    :class:`WriteToOpenSearch` (its connection, bulk settings and ``id_field``) or an ``OpenSearchSinkConfig``.

        from neural_ingest.config import SentenceTransformersEncoderConfig
        minilm = SentenceTransformersEncoderConfig(model="all-MiniLM-L6-v2", device="cpu")
        result = records | EmbedAndIndex(minilm, WriteToOpenSearch(index="articles"), text_fields=["title", "body"])
    """

    def __init__(
        self,
        encoders: EncoderConfig | Sequence[EncoderConfig],
        sink: WriteToOpenSearch | OpenSearchSinkConfig,
        *,
        id_field: str | None = None,
        text_fields: Sequence[str] = ("text",),
        metadata_fields: Sequence[str] = (),
        text_separator: str = "\n\n",
        create_index: bool = True,
        progress_every: float = 10.0,
    ):
        super().__init__()
        self.encoder_configs: list[EncoderConfig] = (
            list(encoders) if isinstance(encoders, (list, tuple)) else [cast("EncoderConfig", encoders)]
        )
        if not self.encoder_configs:
            raise ConfigError("EmbedAndIndex: encoders: give at least one encoder config")
        fields = [encoder_field(c) for c in self.encoder_configs]
        if len(set(fields)) != len(fields):
            raise ConfigError(f"EmbedAndIndex: encoders write the same field {fields}: set a distinct `field` on each")
        if isinstance(sink, WriteToOpenSearch):
            self.sink_config, default_id = sink.config, sink.id_field
        elif isinstance(sink, OpenSearchSinkConfig):
            self.sink_config, default_id = sink, "id"
        else:
            raise ConfigError(
                f"EmbedAndIndex: sink must be a WriteToOpenSearch or an OpenSearchSinkConfig, got {type(sink).__name__}"
            )
        self.source = _config(
            SourceConfig,
            "EmbedAndIndex",
            type="jsonl",
            path="<pcollection>",
            id_field=id_field or default_id,
            text_fields=list(text_fields),
            metadata_fields=list(metadata_fields),
            text_separator=text_separator,
            deduplicate=False,
        )
        self.create_index = create_index
        self.progress_every = progress_every

    def _index_config(self, encoders: list[tuple[str, Any]]) -> OpenSearchSinkConfig:
        """Create the index when missing (the CLI's mapping, no bulk-load settings: nothing restores them after
        a user's pipeline); the config with the k-NN engine chosen for this cluster."""
        if not self.create_index:
            return self.sink_config
        from neural_ingest.sinks.opensearch import OpenSearchSink

        loaded = {enc.share_key(): enc.acquire() for _, enc in encoders}
        _LOADED.update(loaded)
        fields = {f: loaded[enc.share_key()].info for f, enc in encoders}
        sink = OpenSearchSink(self.sink_config.model_copy(update={"bulk_load_settings": False}))
        sink.prepare(fields, run_id="")
        return sink.cfg

    def expand(self, records: beam.PCollection[Any]) -> WriteResult:
        from neural_ingest.encoders import make_encoder
        from neural_ingest.transforms.counters import DEAD_LETTER, SKIPPED
        from neural_ingest.transforms.encode import EncodeAll
        from neural_ingest.transforms.write_opensearch import WriteToOpenSearch as _Write

        encoders = [(encoder_field(c), make_encoder(c)) for c in self.encoder_configs]
        cfg = self._index_config(encoders)
        every = self.progress_every
        prepared = records | "Prepare" >> beam.ParDo(_PrepareOrPassFn(self.source)).with_outputs(
            DEAD_LETTER, SKIPPED, main="documents"
        )
        encoded = prepared.documents | "Encode" >> EncodeAll(encoders, every)
        written = encoded["documents"] | "Write" >> _Write(cfg, [f for f, _ in encoders], every, emit_ids=True)
        failed = (prepared[DEAD_LETTER], encoded[DEAD_LETTER], written[DEAD_LETTER]) | "Failed" >> beam.Flatten()
        return WriteResult(written["indexed"], failed, prepared[SKIPPED])


class _PrepareOrPassFn(PrepareFn):
    """The CLI's record -> Document rules (transforms/prepare.py) for dicts; a Document passes as it is."""

    def process(self, record: Any) -> Iterable[Any]:
        if isinstance(record, Document):
            yield record
            return
        yield from super().process(record)
