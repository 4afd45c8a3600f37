"""An OpenSearch index as a Beam source: a point in time (PIT) per concrete index, read in slices,
each slice paged with ``search_after``.

- One element per slice, spread by a Reshuffle, so runners read slices in parallel (splittable-ish).
- Slices per index are never fewer than its primary shards: each slice then stays inside one shard,
  where the ``_doc`` sort order is unique (with fewer slices, OpenSearch 2.x repeats ``_doc`` values
  across shards and ``search_after`` skips documents).
- Every page renews the PIT's keep-alive; the PITs are closed once every slice is done (a side input
  of the slices' completions), and expire on their own if the run dies.
- Records are the ``_source`` fields asked for (dotted names reach into objects) plus ``_id``.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import apache_beam as beam

from neural_ingest.config import OpenSearchSourceConfig
from neural_ingest.errors import NeuralIngestError
from neural_ingest.metadata import record_problem
from neural_ingest.records import READ
from neural_ingest.transforms import counters
from neural_ingest.transforms.counters import DEAD_LETTER

log = logging.getLogger(__name__)

PITS, DONE = "pits", "done"
RETRY_STATUSES = {429, 502, 503, 504}


class SourceReadError(NeuralIngestError, RuntimeError):
    """The source index cannot be read (missing, PIT expired, refused): the run stops with the reason."""


@dataclass(frozen=True)
class SliceSpec:
    index: str
    pit_id: str
    slice_id: int
    max_slices: int


def source_includes(cfg: OpenSearchSourceConfig) -> list[str]:
    """The _source fields a source run needs: text, metadata and (unless it is _id) the id field."""
    fields = [*cfg.text_fields, *cfg.metadata_fields]
    if cfg.id_field and cfg.id_field != "_id":
        fields.append(cfg.id_field)
    return list(dict.fromkeys(fields))


def client_for(cfg: OpenSearchSourceConfig) -> Any:
    from neural_ingest.sinks.opensearch_client import make_client

    return make_client(cfg, timeout=cfg.timeout)  # the sink's connection settings: hosts, auth, TLS


def shard_counts(client: Any, index: str) -> dict[str, int]:
    """Concrete open indices behind ``index`` (a name, alias or pattern) -> primary shard count."""
    from opensearchpy import exceptions as os_exc

    try:
        got = client.indices.get_settings(index=index, name="index.number_of_shards")
    except os_exc.NotFoundError:
        raise SourceReadError(f"source index {index!r} does not exist: check source.index") from None
    counts = {name: int(body["settings"]["index"]["number_of_shards"]) for name, body in got.items()}
    if not counts:
        raise SourceReadError(f"source.index {index!r} matches no index")
    return counts


def source_problems(cfg: OpenSearchSourceConfig) -> list[str]:
    """Pre-flight for validate and run: the cluster answers and source.index names an index. One line
    per problem, with the fix, never a password (instead of a Beam traceback from inside the read)."""
    from opensearchpy import exceptions as os_exc

    from neural_ingest.sinks.base import SinkError
    from neural_ingest.sinks.opensearch import connection_problem

    try:
        shard_counts(client_for(cfg), cfg.index)
    except (SinkError, SourceReadError) as e:  # a missing source.ca_certs; no such index
        return [str(e)]
    except os_exc.OpenSearchException as e:
        return [connection_problem(cfg, e)]
    return []


def plan_slices(counts: dict[str, int], slices: int | None) -> dict[str, int]:
    """Slices per concrete index: the configured number, but never fewer than its primary shards."""
    return {name: max(slices or shards, shards) for name, shards in counts.items()}


def _dotted(src: dict[str, Any], path: str) -> Any:
    node: Any = src
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def to_record(hit: dict[str, Any], includes: list[str] | None) -> dict[str, Any]:
    src = dict(hit.get("_source") or {})
    for f in includes or ():
        if "." in f and f not in src:
            value = _dotted(src, f)
            if value is not None:
                src[f] = value
    src["_id"] = hit["_id"]
    return src


def search_with_retries(
    client: Any, body: dict[str, Any], attempts: int = 6, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Any]:
    """One search, retried through connection errors and back-pressure (429/5xx)."""
    from opensearchpy import exceptions as os_exc

    for attempt in range(attempts):
        try:
            return cast("dict[str, Any]", client.search(body=body))
        except os_exc.NotFoundError as e:
            raise SourceReadError(
                f"the point in time is gone ({e.error}): it expired between pages; raise source.keep_alive"
            ) from None
        except (os_exc.ConnectionError, os_exc.ConnectionTimeout, os_exc.TransportError) as e:
            status = getattr(e, "status_code", None)
            transient = isinstance(e, (os_exc.ConnectionError, os_exc.ConnectionTimeout)) or status in RETRY_STATUSES
            if not transient or attempt == attempts - 1:
                raise
            delay = min(30.0, 0.5 * 2**attempt)
            log.warning("source search failed (%s); retrying in %.1fs", type(e).__name__, delay)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


class OpenPitsFn(beam.DoFn):
    """One PIT per concrete index; emits the slices to read and (tagged) the PIT ids to close."""

    def __init__(self, cfg: OpenSearchSourceConfig):
        self.cfg = cfg

    def process(self, _: Any) -> Iterable[Any]:
        client = client_for(self.cfg)
        try:
            for index, n in sorted(plan_slices(shard_counts(client, self.cfg.index), self.cfg.slices).items()):
                pit_id = client.create_pit(index=index, params={"keep_alive": self.cfg.keep_alive})["pit_id"]
                log.info("reading %s through a point in time in %d slice(s)", index, n)
                yield beam.pvalue.TaggedOutput(PITS, pit_id)
                for i in range(n):
                    yield SliceSpec(index, pit_id, i, n)
        finally:
            client.close()


class ReadSliceFn(beam.DoFn):
    """Page through one slice of a PIT with search_after; tag the PIT id as done at the end."""

    def __init__(self, cfg: OpenSearchSourceConfig, includes: list[str] | None, count_read: bool = True,
                 page_fn: Callable[[list[dict[str, Any]]], Iterable[Any]] | None = None):
        self.cfg = cfg
        self.includes = includes
        self.count_read = count_read
        self.page_fn = page_fn
        self._client = None

    def setup(self) -> None:
        self._client = client_for(self.cfg)

    def teardown(self) -> None:
        if self._client is not None:
            self._client.close()

    def body(self, spec: SliceSpec, pit_id: str, after: list[Any] | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "pit": {"id": pit_id, "keep_alive": self.cfg.keep_alive},
            "size": self.cfg.page_size,
            "sort": [{"_doc": "asc"}],
            "query": self.cfg.query or {"match_all": {}},
            "track_total_hits": False,
            "_source": {"includes": self.includes} if self.includes else False,
        }
        if spec.max_slices > 1:
            body["slice"] = {"id": spec.slice_id, "max": spec.max_slices}
        if after is not None:
            body["search_after"] = after
        return body

    def _record(self, record: dict[str, Any]) -> Iterable[Any]:
        """The record, or (a lone surrogate another writer stored; nesting too deep to carry) its dead letter.
        Reading the live index for vector reuse (count_read off), such a document is only not reused."""
        problem = record_problem(record)
        if problem is None:
            yield record
        elif self.count_read:
            reason, message = problem
            yield counters.dead_letter(READ, reason, message, record, doc_id=str(record.get("_id")))
        else:
            log.warning("stored document %r cannot be reused (%s); it is encoded again", record.get("_id"), problem[1])

    def process(self, spec: SliceSpec) -> Iterable[Any]:
        after = None
        pit_id = spec.pit_id
        n = 0
        while True:
            res = search_with_retries(self._client, self.body(spec, pit_id, after))
            pit_id = res.get("pit_id") or pit_id
            hits = res["hits"]["hits"]
            if self.page_fn is not None:
                yield from self.page_fn(hits)
            else:
                for hit in hits:
                    yield from self._record(to_record(hit, self.includes))
            n += len(hits)
            if self.count_read:
                counters.inc("read", len(hits))
            if len(hits) < self.cfg.page_size:
                break
            after = hits[-1]["sort"]
        log.debug("slice %d/%d of %s: %d documents", spec.slice_id + 1, spec.max_slices, spec.index, n)
        yield beam.pvalue.TaggedOutput(DONE, spec.pit_id)


class ClosePitFn(beam.DoFn):
    """Close a PIT once every slice is done (``done`` is a side input: complete before this runs)."""

    def __init__(self, cfg: OpenSearchSourceConfig):
        self.cfg = cfg

    def process(self, pit_id: str, done: list[str]) -> Iterable[Any]:
        client = client_for(self.cfg)
        try:
            client.delete_pit(body={"pit_id": [pit_id]})
        except Exception as e:  # noqa: BLE001 - it expires on its own; a failed close is not a failed run
            log.warning("could not close a point in time on %s (%s); it expires after %s", self.cfg.index, e, self.cfg.keep_alive)
        finally:
            client.close()
        return []


class ReadFromOpenSearch(beam.PTransform[Any, Any]):
    """PBegin -> {"records": dicts (_source fields + _id), "dead_letter": documents no stage could carry}.

    ``includes``: the _source fields to fetch (default: the source config's text, metadata and id
    fields, so an old index's vectors are never pulled when it is only re-embedded). ``count_read``:
    count records as ``read`` (off when reading the live index for vector reuse). ``page_fn``: the hits of
    one page -> what to emit instead of one record each (reindex reads the live index's stamps in batches).
    """

    def __init__(self, cfg: OpenSearchSourceConfig, includes: list[str] | None = None, count_read: bool = True,
                 page_fn: Callable[[list[dict[str, Any]]], Iterable[Any]] | None = None):
        super().__init__()
        self.cfg = cfg
        self.includes = source_includes(cfg) if includes is None else includes
        self.count_read = count_read
        self.page_fn = page_fn

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection[Any]]:
        opened = (
            pbegin
            | "Start" >> beam.Create([None])
            | "OpenPits" >> beam.ParDo(OpenPitsFn(self.cfg)).with_outputs(PITS, main="slices")
        )
        read = (
            opened.slices
            | "SpreadSlices" >> beam.Reshuffle()
            | "ReadSlices"
            >> beam.ParDo(ReadSliceFn(self.cfg, self.includes, self.count_read, self.page_fn)).with_outputs(
                DONE, DEAD_LETTER, main="records"
            )
        )
        _ = opened[PITS] | "ClosePits" >> beam.ParDo(ClosePitFn(self.cfg), done=beam.pvalue.AsList(read[DONE]))
        return {"records": read.records, DEAD_LETTER: read[DEAD_LETTER]}
