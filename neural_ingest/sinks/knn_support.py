"""Which k-NN engine and memory options an index gets, checked against what the cluster accepts.

``sink.knn.engine: null`` (the default) picks faiss, whose HNSW search uses the ``ef_search`` written
into the field's method parameters at index creation for every query (a client's plain ``k: 10`` query
then searches ef_search candidates: recall@10 0.998 instead of 0.94-0.97 for lucene on the benchmark corpus,
docs/benchmark.md). The lucene engine on OpenSearch 2.19 honours no index-level setting (it searches k
candidates unless the query sets method_parameters; 3.5 honours ``index.knn.algo_param.ef_search``), so
it is the fallback only where faiss cannot run: nodes without the k-NN native libraries. Nodes started by
scripts/opensearch-local.sh say so (node attribute ``knn_faiss``); nodes it started before it built the
libraries carry no attribute and the cluster name ``neural-ingest-*``; any other cluster (a stock distribution, a managed service)
has them.

Compression levels and modes each engine accepts (probed with index creation on 2.19.6 and 3.5.0):
"""

from __future__ import annotations

from typing import Any

from neural_ingest.config import KnnConfig

# (major version, engine) -> compression levels accepted (identical on 2.19.6 and 3.5.0); on_disk takes
# 1x only with faiss on 3.x.
COMPRESSION = {
    (2, "lucene"): {"1x", "4x"},
    (2, "faiss"): {"1x", "2x", "8x", "16x", "32x"},
    (3, "lucene"): {"1x", "4x"},
    (3, "faiss"): {"1x", "2x", "8x", "16x", "32x"},
}
FAISS_ONLY_LEVELS = {"2x", "8x", "16x", "32x"}


def faiss_available(client: Any) -> tuple[bool, str]:
    """(whether every node can run faiss, why not)."""
    from opensearchpy import exceptions as os_exc

    try:
        attrs = client.cat.nodeattrs(format="json", h="node,attr,value")
    except os_exc.AuthorizationException:  # a managed service that hides _cat/nodeattrs: its nodes have faiss
        return True, ""
    said = {a.get("node", "?"): a.get("value") for a in attrs if a.get("attr") == "knn_faiss"}
    lacking = sorted(n for n, v in said.items() if v != "true")
    if lacking:
        return False, f"node(s) {', '.join(lacking)} say knn_faiss={said[lacking[0]]}: no faiss native libraries"
    if not said and str(client.info().get("cluster_name", "")).startswith("neural-ingest-"):
        return False, "the node was started by an older scripts/opensearch-local.sh that did not install the faiss libraries"
    return True, ""


def resolve(knn: KnnConfig, client: Any) -> tuple[KnnConfig, list[str]]:
    """The config with its engine decided, and the problems of its options on this cluster (one line each)."""
    problems: list[str] = []
    engine = knn.engine
    wants_faiss = knn.encoder is not None or knn.compression_level in FAISS_ONLY_LEVELS
    if engine is None:
        ok, why = faiss_available(client)
        if ok:
            engine = "faiss"
        elif wants_faiss:
            problems.append(
                f"sink.knn: {_options(knn)}: only the faiss engine has it, and this cluster has none ({why}): "
                "remove it or use a node with the faiss libraries"
            )
            engine = "faiss"
        else:
            engine = "lucene"
    elif engine == "faiss":  # a faiss write kills a node without the libraries: refuse before creating anything
        ok, why = faiss_available(client)
        if not ok:
            problems.append(
                f"sink.knn.engine faiss: this cluster cannot run it ({why}): set sink.knn.engine: lucene "
                "(or null to choose), or use a node with the faiss libraries (scripts/opensearch-local.sh)"
            )
    knn = knn.model_copy(update={"engine": engine})
    problems += option_problems(knn, _major(client))
    return knn, problems


def option_problems(knn: KnnConfig, major: int) -> list[str]:
    """What OpenSearch ``major`` refuses (or silently ignores) in these memory options."""
    engine, level, mode = knn.engine, knn.compression_level, knn.mode
    out: list[str] = []
    allowed = COMPRESSION.get((min(max(major, 2), 3), engine or "faiss"), set())
    if level and level not in allowed:
        other = " (or engine faiss for 2x, 8x-32x)" if engine == "lucene" else " (or engine lucene for 4x)"
        out.append(
            f"sink.knn.compression_level {level}: the {engine} engine on OpenSearch {major}.x accepts only "
            f"{', '.join(sorted(allowed, key=lambda s: int(s[:-1])))}: pick one of those{other}"
        )
    if mode == "on_disk" and level == "1x" and (major < 3 or engine == "lucene"):
        out.append("sink.knn.compression_level 1x with mode on_disk: on_disk compresses; pick 2x-32x or drop mode")
    if knn.encoder == "sq_fp16" and mode == "on_disk":
        out.append("sink.knn.encoder sq_fp16 with mode on_disk: on_disk already quantises; keep one")
    return out


def _options(knn: KnnConfig) -> str:
    return f"encoder {knn.encoder}" if knn.encoder else f"compression_level {knn.compression_level}"


def _major(client: Any) -> int:
    try:
        return int(str(client.info()["version"]["number"]).split(".")[0])
    except (KeyError, ValueError, TypeError):
        return 2
