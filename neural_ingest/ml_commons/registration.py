"""Which models a pipeline needs in ML Commons, and registering (then deploying) each of them once."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neural_ingest.catalogue import CatalogueEntry
from neural_ingest.ml_commons.client import MLCommons, MLCommonsError
from neural_ingest.ml_commons.registry import ModelRegistry, RegisteredModel

log = logging.getLogger(__name__)


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


def build_local_artifacts(
    planned: list[PlannedModel], out_dir: Path, skip: set[str], echo: Callable[[str], None] = log.info
) -> dict[str, Path]:
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
                name=e.name,
                model_id=model_id,
                state="REGISTERED",
                function_name=e.function_name,
                version=e.version,
                model_format=fmt,
                source=source,
                cluster=cluster,
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
