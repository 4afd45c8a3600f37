"""ML Commons over HTTP: register, upload, deploy, predict, search pipelines; task polling; errors that say the fix."""
from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from neural_ingest.catalogue import CatalogueEntry
from neural_ingest.errors import NeuralIngestError
from neural_ingest.ml_commons.bodies import (
    CHUNK_SIZE,
    LOCAL_UPLOAD_SETTING,
    ML,
    URL_UPLOAD_SETTING,
    register_body,
    register_meta_body,
)

log = logging.getLogger(__name__)

_DONE = {"COMPLETED", "FAILED", "COMPLETED_WITH_ERROR", "CANCELLED"}


class MLCommonsError(NeuralIngestError, RuntimeError):
    """ML Commons refused or failed a step; the message names the step, the cluster's error and the fix."""


# ----------------------------------------------------------------------------- request bodies

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
            raise MLCommonsError(
                f"{what}: cannot reach the cluster ({type(e).__name__}): check the host and that it is up"
            ) from None
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
            task: dict[str, Any] = self.request("GET", f"{ML}/tasks/{task_id}", what=f"{what}: reading task {task_id}")
            state = task.get("state")
            if state in _DONE:
                break
            if time.monotonic() > deadline:
                raise MLCommonsError(
                    f"{what}: task {task_id} is still {state} after {self.timeout:.0f}s; check it with GET {ML}/tasks/{task_id}"
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
            model: dict[str, Any] = self.client.transport.perform_request("GET", f"{ML}/models/{model_id}")
            return model
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
        return str(model_id)

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
        log.info(
            "%s: POST %s/models/_register_meta (%d bytes, %d chunks)",
            what,
            ML,
            body["model_content_size_in_bytes"],
            body["total_chunks"],
        )
        resp = self.request("POST", f"{ML}/models/_register_meta", body, what=what)
        model_id: str = resp.get("model_id")
        if not model_id:
            raise MLCommonsError(f"{what}: ML Commons answered without a model id: {resp}")
        total = body["total_chunks"]
        with open(artifact, "rb") as f:
            for n in range(total):
                chunk = f.read(CHUNK_SIZE)
                self.request("POST", f"{ML}/models/{model_id}/upload_chunk/{n}", chunk, what=f"{what}: chunk {n + 1}/{total}")
                if progress:
                    progress(n + 1, total)
        self.wait_model(
            model_id,
            ready={"REGISTERED", "DEPLOYED"},
            failed={"REGISTER_FAILED", "DEPLOY_FAILED"},
            what=f"{what}: after uploading {total} chunks",
        )
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
                    f"{what}: model {model_id} is still {state} after {self.timeout:.0f}s; "
                    f"check it with GET {ML}/models/{model_id}"
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
            "PUT",
            f"/{index}/_settings",
            {"index.search.default_pipeline": pipeline},
            what=f"setting {index}'s default search pipeline",
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
