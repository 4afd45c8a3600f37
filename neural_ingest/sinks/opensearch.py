"""OpenSearch sink: pre-flight checks, index creation from the model, bulk writes, k-NN search."""
from __future__ import annotations

import logging
from typing import Any

import apache_beam as beam
from opensearchpy import OpenSearch
from opensearchpy import exceptions as os_exc

from neural_ingest.config import OpenSearchSinkConfig
from neural_ingest.hybrid import DEFAULT_WEIGHTS, search_pipeline_body
from neural_ingest.model_info import DenseVector, ModelInfo, SparseVector
from neural_ingest.redact import redact_url
from neural_ingest.sinks import sparse_query as sq
from neural_ingest.sinks.base import (
    REPLACE,
    UPSERT,
    ChunkLayout,
    DenseQuery,
    Hit,
    Searcher,
    Sink,
    SinkError,
    SparseQuery,
)
from neural_ingest.sinks.knn_query import knn_clause
from neural_ingest.sinks.mapping import index_body, knn_engines, mapping_problems
from neural_ingest.sinks.opensearch_chunks import ChunkedOpenSearch
from neural_ingest.sinks.opensearch_client import connection_problem, make_client

# connection_problem and knn_clause are imported from here too (read_opensearch, tests).
__all__ = ["DOTTED_TOKEN_WINDOW", "OpenSearchSink", "connection_problem", "knn_clause"]

log = logging.getLogger(__name__)

# Candidates fetched when rank_feature queries must be completed client-side (tokens with a dot).
DOTTED_TOKEN_WINDOW = 200


class OpenSearchSink(Sink):
    # Merged into the mapping of an index this sink creates (reindex: its stamp field and
    # _meta.neural_ingest, so the index is born marked "building" and a killed run's index is recognised).
    extra_mappings: dict[str, Any] | None = None

    def __init__(self, cfg: OpenSearchSinkConfig, mode: str = REPLACE, chunking: ChunkLayout | None = None):
        super().__init__(mode, chunking)
        self.cfg = cfg
        self._client: OpenSearch | None = None
        self._neural: bool | None = None

    @property
    def client(self) -> OpenSearch:
        if self._client is None:
            self._client = make_client(self.cfg)
        return self._client

    @property
    def index_name(self) -> str:
        return self.cfg.index

    def describe(self) -> str:
        return self.cfg.describe()

    def check(self, fields: dict[str, ModelInfo]) -> list[str]:
        try:
            self.client  # noqa: B018 - building it checks the TLS settings (sink.ca_certs)
        except SinkError as e:
            return [str(e)]
        try:
            self.client.info()
            problems: list[str] = []
            dense = any(i.kind == "dense" for i in fields.values())
            if dense:
                plugins = {p["component"] for p in self.client.cat.plugins(format="json")}
                if "opensearch-knn" not in plugins:
                    problems.append(
                        f"the k-NN plugin is not installed on {redact_url(self.cfg.hosts[0])}: install opensearch-knn"
                    )
                else:
                    problems += self._resolve_knn()
            if any(i.kind == "sparse" for i in fields.values()):
                problems += self._rank_features_problems()
            existing_engines: set[str] = set()
            if self.client.indices.exists(index=self.cfg.index):
                got = self.client.indices.get_mapping(index=self.cfg.index)
                existing_engines = {e for body in got.values() for e in knn_engines(body.get("mappings", {}))}
                for name, body in got.items():
                    problems += [
                        f"index {name}: {p}" for p in mapping_problems(body.get("mappings", {}), self.cfg, fields, self.chunking)
                    ]
                if problems:
                    problems.append(
                        f"fix: write to a new index (sink.index), or delete {self.cfg.index} to rebuild it with this model"
                    )
            if "faiss" in existing_engines and not (dense and self.cfg.knn.engine == "faiss"):
                problems += self._faiss_problems()
            return problems
        except os_exc.OpenSearchException as e:
            return [connection_problem(self.cfg, e)]

    def _faiss_problems(self) -> list[str]:
        """An existing index with faiss fields, on nodes without the k-NN native libraries: its first write would
        crash them, whatever sink.knn says (a configured faiss engine is checked by knn_support.resolve)."""
        from neural_ingest.sinks.knn_support import faiss_available

        ok, why = faiss_available(self.client)
        if ok:
            return []
        return [
            f"index {self.cfg.index} has faiss fields, but this cluster cannot run faiss ({why}): a write would crash the "
            "node: write to a new sink.index, or use a node with the faiss libraries (scripts/opensearch-local.sh)"
        ]

    def _resolve_knn(self) -> list[str]:
        """Decide the engine (sink.knn.engine null: faiss where the nodes can run it) and check the memory
        options against this cluster's version; the config then carries the engine into the mapping."""
        from neural_ingest.sinks.knn_support import resolve

        knn, problems = resolve(self.cfg.knn, self.client)
        if knn.engine != self.cfg.knn.engine:
            log.info("sink.knn.engine: %s (chosen for this cluster)", knn.engine)
        self.cfg = self.cfg.model_copy(update={"knn": knn})
        return problems

    def measure_recall(self, encoders: list[tuple[str, Any]], fields: dict[str, ModelInfo]) -> dict[str, Any] | None:
        """recall@k of a plain client knn query on the built index (sinks/recall.py); after the final refresh."""
        from neural_ingest.sinks.recall import check_index

        return check_index(self, encoders, fields)

    def prepare(self, fields: dict[str, ModelInfo], run_id: str) -> None:
        problems = self.check(fields)
        if problems:
            raise SinkError("; ".join(problems))
        body = index_body(self.cfg, fields, self.chunking)
        if self.extra_mappings:
            extra = dict(self.extra_mappings)
            body["mappings"]["properties"].update(extra.pop("properties", {}))
            body["mappings"].update(extra)
        if not self.client.indices.exists(index=self.cfg.index):
            try:
                self.client.indices.create(index=self.cfg.index, body=body)
                log.info("created index %s", self.cfg.index)
                # full build: no replicas (refresh: bulk_refresh) until finalize; never for a replay (UPSERT)
                if getattr(self.cfg, "bulk_load_settings", False) and self.mode != UPSERT:
                    from neural_ingest.sinks.bulk_load import begin_bulk_load, wants_refresh_off

                    begin_bulk_load(
                        self.client, self.cfg.index, wants_refresh_off(getattr(self.cfg, "bulk_refresh", "auto"), body)
                    )
            except os_exc.RequestError as e:
                if e.error != "resource_already_exists_exception":
                    raise SinkError(f"could not create index {self.cfg.index}: {e.info}") from None
        else:
            # Add only the fields the index lacks (e.g. a sparse field next to an existing dense one);
            # existing ones were checked for conflicts above and are left exactly as they are.
            existing: set[str] = set()
            for m in self.client.indices.get_mapping(index=self.cfg.index).values():
                existing |= set(m.get("mappings", {}).get("properties", {}))
            missing = {k: v for k, v in body["mappings"]["properties"].items() if k not in existing}
            if missing:
                self.client.indices.put_mapping(index=self.cfg.index, body={"properties": missing})

    def write(self, run_id: str, fields: dict[str, ModelInfo], progress_every: float) -> beam.PTransform[Any, Any]:
        if self.chunking is not None:  # one vector per chunk: nested, or a document per chunk
            from neural_ingest.transforms.write_chunks import WriteChunkedToOpenSearch

            return WriteChunkedToOpenSearch(self.cfg, self.chunking, progress_every)
        from neural_ingest.transforms.write_opensearch import WriteToOpenSearch

        return WriteToOpenSearch(self.cfg, list(fields), progress_every)

    def finalize(self, run_id: str, success: bool) -> None:
        """Make the run's writes searchable now; best effort, since the summary must still be written
        when the cluster went away (its dead letters already say what was not indexed)."""
        from neural_ingest.sinks.bulk_load import end_bulk_load

        end_bulk_load(self.client, self.cfg.index)  # the index's own refresh_interval / replicas, also after a failure
        if not success:
            return
        try:
            self.client.indices.refresh(index=self.cfg.index, request_timeout=self.cfg.bulk.refresh_timeout)
        except os_exc.OpenSearchException as e:
            log.warning("could not refresh %s after the run: %s", self.cfg.index, connection_problem(self.cfg, e))

    def count(self) -> int | None:
        """Documents in the index (with separate chunk storage: chunk documents); None when it cannot be asked."""
        try:
            if not self.client.indices.exists(index=self.cfg.index):
                return 0
            return int(self.client.count(index=self.cfg.index)["count"])
        except (os_exc.OpenSearchException, KeyError, TypeError, ValueError):
            return None

    def searchable_count(self) -> int | None:
        try:
            exists = self.client.indices.exists(index=self.cfg.index)
        except os_exc.OpenSearchException as e:
            raise SinkError(connection_problem(self.cfg, e)) from None
        if not exists:
            raise SinkError(
                f"index or alias {self.cfg.index!r} does not exist at {redact_url(self.cfg.hosts[0])}: check sink.index, or "
                "build it with `neural-ingest run CONFIG` (`neural-ingest reindex CONFIG` for an alias)"
            )
        return self.count()

    def chunk_searcher(self, chunking: ChunkLayout, fields: list[str]) -> Searcher:
        return ChunkedOpenSearch(self, chunking, fields)

    def knn_clause(self, field: str, vector: DenseVector, k: int) -> dict[str, Any]:
        return knn_clause(self.cfg.knn, field, vector, k)

    def search(self, field: str, info: ModelInfo, vector: DenseVector, k: int) -> list[Hit]:
        body = {"size": k, "query": self.knn_clause(field, vector, k), "_source": {"excludes": [field]}}
        res = self.client.search(index=self.cfg.index, body=body)
        return [Hit(h["_id"], float(h["_score"]), h.get("_source", {})) for h in res["hits"]["hits"]]

    # ------------------------------------------------------------------ sparse and hybrid search
    def _rank_features_problems(self) -> list[str]:
        """rank_features lives in the mapper-extras module: every node must have it."""
        try:
            nodes = self.client.nodes.info(metric="plugins").get("nodes", {})  # modules are listed there
        except os_exc.AuthorizationException:
            return []  # cannot tell; index creation will say so if it is missing
        missing = [
            n.get("name", nid) for nid, n in nodes.items() if "mapper-extras" not in {m.get("name") for m in n.get("modules", [])}
        ]
        if missing:
            return [
                f"nodes {', '.join(missing)} lack OpenSearch's mapper-extras module, which provides rank_features "
                "for sparse fields: use a standard OpenSearch distribution (or add the module)"
            ]
        return []

    def neural_search_enabled(self) -> bool:
        """Config decides; otherwise whether the neural-search plugin is installed (asked once)."""
        if self.cfg.use_neural_search is not None:
            return self.cfg.use_neural_search
        if self._neural is None:
            try:
                plugins = {p["component"] for p in self.client.cat.plugins(format="json")}
            except os_exc.OpenSearchException as e:
                raise SinkError(connection_problem(self.cfg, e)) from None
            self._neural = "opensearch-neural-search" in plugins
        return self._neural

    def search_sparse(self, field: str, info: ModelInfo, query: SparseVector, k: int) -> list[Hit]:
        """neural_sparse (query_tokens) with neural-search, else linear rank_feature queries; score = dot product."""
        if self.neural_search_enabled():
            body = {"size": k, "query": sq.neural_sparse_clause(field, query), "_source": {"excludes": [field]}}
            res = self.client.search(index=self.cfg.index, body=body)
            return [Hit(h["_id"], float(h["_score"]), h.get("_source", {})) for h in res["hits"]["hits"]]
        plain, dotted = sq.split_dotted(query)
        if not dotted:
            body = {"size": k, "query": sq.rank_feature_clause(field, query), "_source": {"excludes": [field]}}
            res = self.client.search(index=self.cfg.index, body=body)
            return [Hit(h["_id"], float(h["_score"]), h.get("_source", {})) for h in res["hits"]["hits"]]
        # rank_feature cannot address tokens with a dot: score them client-side on a window of candidates.
        window = max(k, DOTTED_TOKEN_WINDOW)
        log.warning(
            "without neural-search, query tokens containing '.' (%s) are scored client-side over the top %d "
            "candidates; documents that match only those tokens are not found",
            ", ".join(sorted(dotted)[:10]),
            window,
        )
        body = {"size": window, "query": sq.rank_feature_clause(field, query)}
        res = self.client.search(index=self.cfg.index, body=body)
        raw = [(h["_id"], float(h["_score"] or 0.0), h.get("_source", {})) for h in res["hits"]["hits"]]
        scored = sq.add_dotted_scores(raw, field, dotted, base_is_zero=not plain)
        return [Hit(i, s, {kk: vv for kk, vv in src.items() if kk != field}) for i, s, src in scored[:k]]

    def search_hybrid(
        self, dense: DenseQuery, sparse: SparseQuery, k: int, weights: tuple[float, float] | None = None
    ) -> list[Hit]:
        """One ``hybrid`` query through a normalization search pipeline (min_max + arithmetic_mean) with
        neural-search; client-side fusion of the two searches otherwise."""
        if not self.neural_search_enabled():
            return super().search_hybrid(dense, sparse, k, weights)
        w = list(weights or DEFAULT_WEIGHTS)
        w = [x / sum(w) for x in w]  # neural-search wants weights that sum to 1
        (d_field, _d_info, d_vec), (s_field, _s_info, s_query) = dense, sparse
        body = {
            "size": k,
            "query": {
                "hybrid": {
                    "queries": [
                        self.knn_clause(d_field, d_vec, k),
                        sq.neural_sparse_clause(s_field, s_query),
                    ]
                }
            },
            "_source": {"excludes": [d_field, s_field]},
            "search_pipeline": search_pipeline_body(w),
        }
        res = self.client.search(index=self.cfg.index, body=body)
        return [Hit(h["_id"], float(h["_score"]), h.get("_source", {})) for h in res["hits"]["hits"]]
