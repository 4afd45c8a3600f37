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

The package: `bodies` (request bodies), `client` (`MLCommons`, its errors), `registry` (the state file),
`registration` (a pipeline's models planned, registered, deployed).
"""
from neural_ingest.ml_commons.bodies import (
    CHUNK_SIZE,
    LOCAL_UPLOAD_SETTING,
    ML,
    URL_UPLOAD_SETTING,
    model_config,
    register_body,
    register_meta_body,
    sha256_file,
)
from neural_ingest.ml_commons.client import MLCommons, MLCommonsError, explain
from neural_ingest.ml_commons.registration import (
    PlannedModel,
    build_local_artifacts,
    deploy_failures,
    plan_models,
    register_models,
)
from neural_ingest.ml_commons.registry import (
    DEFAULT_STATE_FILE,
    ModelRegistry,
    RegisteredModel,
)

__all__ = [
    "CHUNK_SIZE", "DEFAULT_STATE_FILE", "LOCAL_UPLOAD_SETTING", "ML", "URL_UPLOAD_SETTING", "MLCommons", "MLCommonsError",
    "ModelRegistry", "PlannedModel", "RegisteredModel", "build_local_artifacts", "deploy_failures", "explain", "model_config",
    "plan_models", "register_body", "register_meta_body", "register_models", "sha256_file",
]
