"""Register (and deploy) in OpenSearch ML Commons the model the pipeline used, so queries encode alike.

Two ways in:

* by URL, the pretrained way: ``POST /_plugins/_ml/models/_register`` with the body the OpenSearch
  pretrained-models page prescribes (``name``/``version``/``model_format`` for dense models; the full body
  with ``function_name``, ``url`` and ``model_content_hash_value`` for sparse ones). The cluster downloads
  the artifact itself, so it needs to reach artifacts.opensearch.org.
* from a local artifact, for clusters without internet access: ``POST /_plugins/_ml/models/_register_meta``
  (size, sha256, chunk count, model_config), then ``POST /_plugins/_ml/models/<id>/upload_chunk/<n>``
  in chunks of at most 10 MB. ML Commons only accepts this when
  ``plugins.ml_commons.allow_registering_model_via_local_file`` is true.

Then ``POST /_plugins/_ml/models/<id>/_deploy``. Register-by-URL and deploy are asynchronous: their task is
polled (``GET /_plugins/_ml/tasks/<id>``) until COMPLETED or FAILED; a failure becomes a
:class:`MLCommonsError` that says what went wrong and how to fix it. Model ids are recorded in a small
JSON state file keyed by cluster and model name (:class:`ModelRegistry`).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from neural_ingest.catalogue import CatalogueEntry

log = logging.getLogger(__name__)

ML = "/_plugins/_ml"
CHUNK_SIZE = 10_000_000  # ML Commons rejects chunks over 10 MB ("Chunk size exceeds 10MB")
LOCAL_UPLOAD_SETTING = "plugins.ml_commons.allow_registering_model_via_local_file"
URL_UPLOAD_SETTING = "plugins.ml_commons.allow_registering_model_via_url"
DEFAULT_STATE_FILE = ".neural-ingest/models.json"
_DONE = {"COMPLETED", "FAILED", "COMPLETED_WITH_ERROR", "CANCELLED"}


class MLCommonsError(RuntimeError):
    """ML Commons refused or failed a step; the message names the step, the cluster's error and the fix."""


# ----------------------------------------------------------------------------- request bodies
def register_body(entry: CatalogueEntry, model_format: str = "TORCH_SCRIPT") -> dict[str, Any]:
    """The ``_register`` body the pretrained-models page prescribes for ``entry``.

    Dense: ``name``, ``version``, ``model_format`` (ML Commons resolves the rest from its pretrained
    catalogue). Sparse: the full body, ``function_name`` included, with the model's own ``url`` and its
    ``model_content_hash_value`` where the page gives one (only doc-v1's; without a hash ML Commons
    does not verify the download).
    """
    fmt = entry.format(model_format)
    if entry.kind == "dense":
        return {"name": entry.name, "version": entry.version, "model_format": fmt.model_format}
    body: dict[str, Any] = {
        "name": entry.name,
        "version": entry.version,
        "description": entry.description,
        "model_format": fmt.model_format,
        "function_name": entry.function_name,
        "url": fmt.model_url,
    }
    if entry.model_content_hash_value:
        body["model_content_hash_value"] = entry.model_content_hash_value
    return body


def model_config(entry: CatalogueEntry) -> dict[str, Any]:
    """ML Commons ``model_config`` for a local artifact, from the catalogue's figures."""
    if entry.kind == "dense":
        return {
            "model_type": entry.model_type,
            "embedding_dimension": entry.dimension,
            "framework_type": "sentence_transformers",
            "pooling_mode": (entry.pooling or "mean").upper(),
            "normalize_result": bool(entry.normalized),
            "model_max_length": entry.max_seq_length,
        }
    # Sparse models have no embedding dimension; ML Commons' parser still wants these keys.
    return {"model_type": entry.model_type, "embedding_dimension": 1, "framework_type": "sentence_transformers"}


def register_meta_body(entry: CatalogueEntry, artifact: Path, model_format: str = "TORCH_SCRIPT") -> dict[str, Any]:
    """The ``_register_meta`` body for uploading ``artifact`` (a model zip) in chunks."""
    size = artifact.stat().st_size
    return {
        "name": entry.name,
        "version": entry.version,
        "description": entry.description,
        "model_format": entry.format(model_format).model_format,
        "function_name": entry.function_name,
        "model_content_size_in_bytes": size,
        "model_content_hash_value": sha256_file(artifact),
        "total_chunks": max(1, math.ceil(size / CHUNK_SIZE)),
        "model_config": model_config(entry),
    }


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- what a failure means
def explain(error: str, *, url: str | None = None) -> str:
    """A cluster-side error string, plus what it most likely means and the fix."""
    error = (error or "").strip()
    hints = []
    host = urlparse(url).hostname if url else None
    unreachable = "UnknownHost" in error or "Connection refused" in error or "connect timed out" in error
    if host and (host in error or unreachable or "DeleteByQueryAction" in error):
        likely = "" if host in error or unreachable else "most likely "
        hints.append(
            f"{likely}the cluster could not download {url} (it cannot reach {host}). For a cluster without "
            "internet access, fetch the zip elsewhere (dense models: or build one with `neural-ingest models "
            "export`) and register it with --artifact ZIP"
        )
    if "publish.djl.ai" in error:
        hints.append(
            "the ML node could not download the PyTorch native library from publish.djl.ai, which ML Commons "
            "(DJL) needs to run any local model, TorchScript or ONNX. Give the node internet access once, or "
            "pre-populate the DJL cache (the node's ml_cache directory) with PyTorch for this ML Commons version"
        )
    if "DeleteByQueryAction" in error:
        hints.append(
            "ML Commons then failed to clean up because the cluster has no reindex module (delete-by-query); "
            "the underlying error is in the cluster log"
        )
    if "allow_registering_model_via_local_file" in error:
        hints.append(f"set {LOCAL_UPLOAD_SETTING}=true on the cluster (or pass --allow-local-upload)")
    if "allow_registering_model_via_url" in error:
        hints.append(f"set {URL_UPLOAD_SETTING}=true on the cluster, or register from a local --artifact")
    if "trusted_url_regex" in error or "URL can't match trusted url regex" in error:
        hints.append("the URL does not match plugins.ml_commons.trusted_url_regex")
    if re.search(r"(?i)no eligible node|only_run_on_ml_node", error):
        hints.append("no node may run the model: add an ML node or set plugins.ml_commons.only_run_on_ml_node=false")
    if re.search(r"(?i)memory circuit breaker|native_memory_threshold|jvm_heap_memory_threshold", error):
        hints.append("a memory circuit breaker is open: free memory on the ML node or raise the threshold setting")
    if "hash" in error.lower() and "match" in error.lower():
        hints.append("the downloaded file does not match model_content_hash_value")
    text = error or "(no error text)"
    return text + (" -- " + "; ".join(hints) if hints else "")


# ----------------------------------------------------------------------------- the client
class MLCommons:
    """Thin ML Commons client over an opensearch-py client's transport."""

    def __init__(
        self,
        client: Any,
        *,
        poll_interval: float = 1.0,
        timeout: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.client = client
        self.poll_interval = poll_interval
        self.timeout = timeout
        self._sleep = sleep

    # --------------------------------------------------------------- transport
    def request(self, method: str, path: str, body: Any = None, *, what: str, url: str | None = None) -> Any:
        from opensearchpy import exceptions as os_exc

        try:
            return self.client.transport.perform_request(method, path, body=body)
        except os_exc.ConnectionError as e:
            raise MLCommonsError(f"{what}: cannot reach the cluster ({type(e).__name__}): check the host and that it is up") from None
        except os_exc.TransportError as e:
            reason = _error_reason(e)
            if "no handler found" in reason.lower():
                reason += " (is the ml-commons plugin installed on this cluster?)"
            raise MLCommonsError(f"{what} failed ({e.status_code}): {explain(reason, url=url)}") from None

    def check_plugin(self) -> None:
        plugins = {p.get("component") for p in self.client.cat.plugins(format="json")}
        if "opensearch-ml" not in plugins:
            raise MLCommonsError(
                "the ml-commons plugin (opensearch-ml) is not installed on the cluster: install it to register models"
            )

    def allow_local_upload(self) -> None:
        self.request(
            "PUT", "/_cluster/settings", {"persistent": {LOCAL_UPLOAD_SETTING: True}}, what=f"setting {LOCAL_UPLOAD_SETTING}"
        )

    # --------------------------------------------------------------- tasks and models
    def wait_task(self, task_id: str, *, what: str, url: str | None = None) -> dict[str, Any]:
        """Poll a task until it is done; return it when COMPLETED, raise with the explained error otherwise."""
        deadline = time.monotonic() + self.timeout
        while True:
            task = self.request("GET", f"{ML}/tasks/{task_id}", what=f"{what}: reading task {task_id}")
            state = task.get("state")
            if state in _DONE:
                break
            if time.monotonic() > deadline:
                raise MLCommonsError(
                    f"{what}: task {task_id} is still {state} after {self.timeout:.0f}s; check it with "
                    f"GET {ML}/tasks/{task_id}"
                )
            self._sleep(self.poll_interval)
        if state != "COMPLETED":
            error = task.get("error") or ""
            try:  # deploy errors are {"node id": "message"}
                parsed = json.loads(error)
                if isinstance(parsed, dict):
                    error = "; ".join(f"node {k}: {v}" for k, v in parsed.items())
            except (TypeError, ValueError):
                pass
            raise MLCommonsError(f"{what}: task {task_id} {state}: {explain(error, url=url)}")
        return task

    def get_model(self, model_id: str) -> dict[str, Any] | None:
        from opensearchpy import exceptions as os_exc

        try:
            return self.client.transport.perform_request("GET", f"{ML}/models/{model_id}")
        except os_exc.NotFoundError:
            return None

    def register_url(self, entry: CatalogueEntry, model_format: str = "TORCH_SCRIPT") -> str:
        """Register ``entry`` the pretrained way (the cluster downloads it); return the model id."""
        body = register_body(entry, model_format)
        url = entry.format(model_format).model_url
        what = f"registering {entry.name} ({body['model_format']}) by URL"
        log.info("%s: POST %s/models/_register %s", what, ML, json.dumps(body))
        resp = self.request("POST", f"{ML}/models/_register", body, what=what, url=url)
        model_id = resp.get("model_id")
        if resp.get("task_id"):
            task = self.wait_task(resp["task_id"], what=what, url=url)
            model_id = task.get("model_id") or model_id
        if not model_id:
            raise MLCommonsError(f"{what}: ML Commons answered without a model id: {resp}")
        return model_id

    def register_artifact(
        self,
        entry: CatalogueEntry,
        artifact: str | Path,
        model_format: str = "TORCH_SCRIPT",
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> str:
        """Upload a local model zip in chunks; return the model id once ML Commons has it REGISTERED."""
        artifact = Path(artifact)
        if not artifact.is_file():
            raise MLCommonsError(f"artifact {artifact} does not exist or is not a file: give the model's zip")
        body = register_meta_body(entry, artifact, model_format)
        what = f"registering {entry.name} ({body['model_format']}) from {artifact}"
        log.info("%s: POST %s/models/_register_meta (%d bytes, %d chunks)", what, ML, body["model_content_size_in_bytes"], body["total_chunks"])
        resp = self.request("POST", f"{ML}/models/_register_meta", body, what=what)
        model_id = resp.get("model_id")
        if not model_id:
            raise MLCommonsError(f"{what}: ML Commons answered without a model id: {resp}")
        total = body["total_chunks"]
        with open(artifact, "rb") as f:
            for n in range(total):
                chunk = f.read(CHUNK_SIZE)
                self.request("POST", f"{ML}/models/{model_id}/upload_chunk/{n}", chunk, what=f"{what}: chunk {n + 1}/{total}")
                if progress:
                    progress(n + 1, total)
        self.wait_model(model_id, ready={"REGISTERED", "DEPLOYED"}, failed={"REGISTER_FAILED", "DEPLOY_FAILED"},
                        what=f"{what}: after uploading {total} chunks")
        return model_id

    def wait_model(self, model_id: str, *, ready: set[str], failed: set[str], what: str) -> dict[str, Any]:
        """Poll the model until its ``model_state`` is in ``ready`` (raise when it is in ``failed``, or
        still elsewhere after ``timeout`` seconds); return the model."""
        deadline = time.monotonic() + self.timeout
        while True:
            model = self.get_model(model_id) or {}
            state = model.get("model_state")
            if state in ready:
                return model
            if state in failed:
                raise MLCommonsError(f"{what}: model {model_id} is {state}; GET {ML}/models/{model_id} has the details")
            if time.monotonic() > deadline:
                raise MLCommonsError(
                    f"{what}: model {model_id} is still {state} after {self.timeout:.0f}s; check it with GET {ML}/models/{model_id}"
                )
            self._sleep(self.poll_interval)

    def deploy(self, model_id: str, *, name: str = "") -> dict[str, Any]:
        """Deploy and return the model once ML Commons says it is deployed. The deploy task completes
        before the model's own state follows (a loaded node showed DEPLOYING right after COMPLETED), so
        the model itself is waited for, not only the task."""
        what = f"deploying {name or model_id} (model {model_id})"
        resp = self.request("POST", f"{ML}/models/{model_id}/_deploy", what=what)
        if resp.get("task_id"):
            self.wait_task(resp["task_id"], what=what)
        return self.wait_model(model_id, ready={"DEPLOYED", "PARTIALLY_DEPLOYED"}, failed={"DEPLOY_FAILED"}, what=what)

    # --------------------------------------------------------------- search side
    def put_search_pipeline(self, name: str, field_models: dict[str, str], default_model_id: str) -> dict[str, Any]:
        """A search pipeline whose neural_query_enricher fills in the model id per field."""
        body = {
            "description": "neural-ingest: query-time models matching the ingest models",
            "request_processors": [
                {"neural_query_enricher": {"default_model_id": default_model_id, "neural_field_default_id": field_models}}
            ],
        }
        self.request("PUT", f"/_search/pipeline/{name}", body, what=f"creating search pipeline {name}")
        return body

    def set_default_pipeline(self, index: str, pipeline: str) -> None:
        if not self.client.indices.exists(index=index):
            raise MLCommonsError(
                f"index {index} does not exist yet, so its default search pipeline cannot be set: run "
                "`neural-ingest run` first, then register again with --search-pipeline"
            )
        self.request(
            "PUT", f"/{index}/_settings", {"index.search.default_pipeline": pipeline}, what=f"setting {index}'s default search pipeline"
        )


def _error_reason(e: Any) -> str:
    info = getattr(e, "info", None)
    if isinstance(info, dict):
        err = info.get("error", info)
        if isinstance(err, dict):
            root = (err.get("root_cause") or [{}])[0]
            return str(err.get("reason") or root.get("reason") or err)
        return str(err)
    return str(getattr(e, "error", "") or e)


# ----------------------------------------------------------------------------- recorded model ids
@dataclass
class RegisteredModel:
    name: str
    model_id: str
    state: str  # "DEPLOYED" | "REGISTERED"
    function_name: str
    version: str
    model_format: str
    source: str  # "url" | "artifact:<path>"
    cluster: str
    registered_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    error: str | None = None


class ModelRegistry:
    """``{cluster: {model name: RegisteredModel}}`` in a JSON file (default ``.neural-ingest/models.json``)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path or os.environ.get("NEURAL_INGEST_MODELS_STATE") or DEFAULT_STATE_FILE)

    def _load(self) -> dict[str, dict[str, dict[str, Any]]]:
        if not self.path.is_file():
            return {}
        try:
            return json.loads(self.path.read_text())
        except ValueError as e:
            raise MLCommonsError(f"{self.path} is not valid JSON ({e}): fix or delete it") from None

    def get(self, cluster: str, name: str) -> RegisteredModel | None:
        rec = self._load().get(_cluster_key(cluster), {}).get(name)
        return RegisteredModel(**rec) if rec else None

    def put(self, rec: RegisteredModel) -> None:
        data = self._load()
        data.setdefault(_cluster_key(rec.cluster), {})[rec.name] = asdict(rec)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.path)

    def model_id(self, cluster: str, name: str) -> str | None:
        """The recorded model id for ``name`` on ``cluster`` (what a neural / neural_sparse query needs)."""
        rec = self.get(cluster, name)
        return rec.model_id if rec else None


def _cluster_key(cluster: str) -> str:
    """Hosts differ in spelling (trailing slash, default port); the key is scheme://host:port."""
    u = urlparse(cluster if "://" in cluster else f"http://{cluster}")
    port = u.port or (443 if u.scheme == "https" else 9200)
    return f"{u.scheme}://{u.hostname}:{port}"


# ----------------------------------------------------------------------------- a pipeline's models
@dataclass
class PlannedModel:
    entry: CatalogueEntry
    fields: list[str]  # index fields whose documents this model encodes ([] for a query-only model)
    query_for: list[str]  # index fields whose queries this model encodes
    sources: list[Any] = field(default_factory=list)  # encoder configs whose local files can build its artifact


def plan_models(encoders: list[Any], field_of: Callable[[Any], str]) -> list[PlannedModel]:
    """The catalogue models a pipeline's encoders need in ML Commons: each encoder's model, and for a
    document-only sparse model also its query-side tokenizer model."""
    from neural_ingest.catalogue import get, lookup

    planned: dict[str, PlannedModel] = {}
    for enc in encoders:
        name = getattr(enc, "model", None)
        fld = field_of(enc)
        entry = lookup(name) if name else None
        if entry is None:
            raise MLCommonsError(
                f"the encoder for field {fld!r} uses model {name!r}, which is not in the catalogue "
                "(`neural-ingest models list`): only catalogue models can be registered; name the model by its "
                "catalogue name and point model_path at its weights"
            )
        p = planned.setdefault(entry.name, PlannedModel(entry, [], []))
        p.fields.append(fld)
        p.sources.append(enc)
        q = planned.setdefault(entry.query_model or entry.name, PlannedModel(get(entry.query_model or entry.name), [], []))
        q.query_for.append(fld)
        if q is not p:  # the query tokenizer shares the document model's vocabulary (and its idf_path)
            q.sources.append(enc)
    return list(planned.values())


def build_local_artifacts(planned: list[PlannedModel], out_dir: Path, skip: set[str], echo: Callable[[str], None] = log.info) -> dict[str, Path]:
    """Build each planned model's ML Commons zip from the pipeline's own local files (the very weights
    the pipeline encodes with); models named in ``skip`` already have an artifact."""
    from neural_ingest.model_export import export_artifact
    from neural_ingest.model_resolve import resolve_model_dir, short_name

    built: dict[str, Path] = {}
    for p in planned:
        if p.entry.name in skip:
            continue
        src = p.sources[0]
        model_dir = resolve_model_dir(src.model, src.model_path, src.models_dir)
        out = out_dir / f"{short_name(p.entry.name)}.zip"
        echo(f"{p.entry.name}: building its artifact from {model_dir}")
        try:
            built[p.entry.name] = export_artifact(
                p.entry, out, model_path=str(model_dir), idf_path=getattr(src, "idf_path", None)
            )
        except ValueError as e:
            raise MLCommonsError(f"--from-local: {e}") from None
    return built


def register_models(
    ml: MLCommons,
    registry: ModelRegistry,
    cluster: str,
    planned: list[PlannedModel],
    *,
    model_format: str = "TORCH_SCRIPT",
    artifacts: dict[str, Path] | None = None,
    deploy: bool = True,
    force: bool = False,
    echo: Callable[[str], None] = log.info,
) -> list[RegisteredModel]:
    """Register every planned model (recording its id; a recorded id still on the cluster is reused),
    then deploy each. A registration failure raises at once. A deploy failure does not: every model has
    its try, and a model that did not deploy comes back with state REGISTERED and ``error`` set (see
    :func:`deploy_failures`), so the caller can still wire up the ids that were registered."""
    artifacts = artifacts or {}
    records: list[tuple[RegisteredModel, str]] = []
    for p in planned:
        e = p.entry
        want = model_format.upper()
        fmt = want if any(f.model_format == want for f in e.formats) else e.formats[0].model_format
        if fmt != want:
            echo(f"{e.name} is published as {fmt} only: using {fmt}")
        rec = None if force else registry.get(cluster, e.name)
        state = ((ml.get_model(rec.model_id) if rec else None) or {}).get("model_state")
        if rec and state in ("REGISTERED", "DEPLOYED", "PARTIALLY_DEPLOYED", "DEPLOY_FAILED", "UNDEPLOYED"):
            echo(f"{e.name}: already registered as {rec.model_id} ({state}) on {cluster}")
        else:
            artifact = artifacts.get(e.name)
            if artifact:
                model_id, source = ml.register_artifact(e, artifact, fmt), f"artifact:{artifact}"
            else:
                model_id, source = ml.register_url(e, fmt), "url"
            rec = RegisteredModel(
                name=e.name, model_id=model_id, state="REGISTERED", function_name=e.function_name,
                version=e.version, model_format=fmt, source=source, cluster=cluster,
            )
            registry.put(rec)
            echo(f"{e.name}: registered as {model_id}")
            state = "REGISTERED"
        records.append((rec, state))

    for rec, state in records:
        if state == "DEPLOYED":
            rec.state, rec.error = "DEPLOYED", None
        elif deploy:
            try:
                ml.deploy(rec.model_id, name=rec.name)
                rec.state, rec.error = "DEPLOYED", None
                echo(f"{rec.name}: deployed ({rec.model_id})")
            except MLCommonsError as err:
                rec.state, rec.error = "REGISTERED", str(err)
        registry.put(rec)
    return [rec for rec, _ in records]


def deploy_failures(records: list[RegisteredModel]) -> list[str]:
    """One line per model that was registered but did not deploy, with the explained reason."""
    return [f"{r.name} is registered as {r.model_id} but was not deployed: {r.error}" for r in records if r.error]
