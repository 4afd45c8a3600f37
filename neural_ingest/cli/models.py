"""`neural-ingest models ...`: the pretrained model catalogue, and registering a pipeline's models in ML Commons."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from neural_ingest.cli.errors import UserError, load_config, user_errors


@click.group("models")
def models() -> None:
    """The pretrained model catalogue (OpenSearch's names), and ML Commons registration."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print every entry as JSON (a list).")
def list_models(as_json: bool) -> None:
    """List the catalogue's models."""
    from neural_ingest.catalogue import ENTRIES

    if as_json:
        click.echo(json.dumps([e.as_dict() for e in ENTRIES], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title="Pretrained models (neural-ingest models show NAME for URLs and corrections)")
    for col in ("name", "kind", "dim", "space_type", "pooling", "normalized", "max_seq", "function", "version", "formats"):
        t.add_column(col)
    for e in ENTRIES:
        t.add_row(
            e.name,
            e.kind,
            str(e.dimension or "-"),
            e.space_type or "-",
            e.pooling or "-",
            "-" if e.normalized is None else ("yes" if e.normalized else "no"),
            str(e.max_seq_length),
            e.function_name,
            e.version,
            ", ".join(f.model_format for f in e.formats),
        )
    Console(width=220).print(t)


@models.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the entry as JSON.")
def show_model(name: str, as_json: bool) -> None:
    """Show one catalogue entry: figures, artifact and config URLs, hash, corrections to the OpenSearch page."""
    from neural_ingest.catalogue import get

    entry = get(name)  # an unknown name: the group's one line, listing the known names
    d = entry.as_dict()
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    for key, value in d.items():
        if key == "formats":
            for f in value:
                click.echo(f"{f['model_format']:>14}: {f['model_url']}")
                click.echo(f"{'config':>14}: {f['config_url']}")
        elif key == "corrections":
            for c in value:
                click.echo(f"{'correction':>14}: {c}")
        elif value is not None:
            click.echo(f"{key:>14}: {value}")
    click.echo(f"{'mapping':>14}: {json.dumps(_mapping(entry))}")


def _mapping(entry: Any) -> dict[str, Any]:
    from neural_ingest.config import OpenSearchSinkConfig
    from neural_ingest.sinks.mapping import field_mapping

    return field_mapping(OpenSearchSinkConfig(index="example"), entry.model_info())


@models.command("export")
@click.argument("name")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--model-path", type=click.Path(file_okay=False), help="Directory with the model's weights.")
@click.option("--models-dir", type=click.Path(file_okay=False), help="Directory searched for models by name.")
@click.option("--idf", "idf_path", type=click.Path(exists=True), help="Sparse tokenizer: idf.json (or its directory).")
def export_model(name: str, out: str, model_path: str | None, models_dir: str | None, idf_path: str | None) -> None:
    """Build the ML Commons zip of NAME from local files, for `register --artifact`: a traced TorchScript zip for
    dense models, tokenizer.json + idf.json for opensearch-neural-sparse-tokenizer-v1."""
    from neural_ingest.catalogue import get
    from neural_ingest.model_export import export_artifact

    with user_errors(ValueError):  # files that cannot make this model's zip
        path = export_artifact(get(name), out, model_path=model_path, models_dir=models_dir, idf_path=idf_path)
    click.echo(f"wrote {path} ({path.stat().st_size} bytes)")


@models.command("register")
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--host", help="Cluster URL; default: the config's OpenSearch sink hosts.")
@click.option(
    "--format", "model_format", type=click.Choice(["torch_script", "onnx"], case_sensitive=False), default="torch_script",
    show_default=True, help="Artifact format for dense models (sparse models are TorchScript only).",
)
@click.option(
    "--artifact", "artifacts", multiple=True, metavar="[NAME=]ZIP",
    help="Register from a local model zip instead of the URL (offline clusters). NAME= picks the model when "
    "several are registered (e.g. a document-only sparse model and its tokenizer).",
)
@click.option(
    "--from-local", is_flag=True,
    help="Build the artifacts from the pipeline's own local weights and upload them (offline clusters; dense models "
    "and the sparse query tokenizer; a sparse encoder needs --artifact).",
)
@click.option(
    "--allow-local-upload", is_flag=True, help="Set plugins.ml_commons.allow_registering_model_via_local_file=true first."
)
@click.option("--deploy/--no-deploy", default=True, show_default=True, help="Deploy after registering.")
@click.option(
    "--search-pipeline",
    metavar="NAME",
    help="Create a search pipeline NAME that fills in these model ids, and make it the index's default.",
)
@click.option(
    "--state", "state_path", type=click.Path(dir_okay=False), help="Where model ids are recorded [.neural-ingest/models.json]."
)
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait for each ML Commons task.")
@click.option("--force", is_flag=True, help="Register again even if a recorded model id is still on the cluster.")
@click.option("--json", "as_json", is_flag=True, help="Print the recorded models as JSON.")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a config value.")
def register(config: str, host: str | None, as_json: bool, overrides: tuple[str, ...], **options: Any) -> None:
    """Register (and deploy) in ML Commons the models CONFIG's pipeline uses, and record their ids."""
    import logging

    if not logging.getLogger().isEnabledFor(logging.DEBUG):  # each 4xx is explained below; no transport warnings
        logging.getLogger("opensearch").setLevel(logging.ERROR)
    cfg = load_config(config, overrides)
    sink, sink_cfg = _cluster(cfg, host, config)
    options["model_format"] = options["model_format"].upper()
    if options["from_local"] and options["model_format"] != "TORCH_SCRIPT":
        raise UserError("--from-local builds TorchScript zips: use --format torch_script, or give ONNX zips with --artifact")
    if options["search_pipeline"] and not sink:
        raise UserError("--search-pipeline sets the index's default pipeline: the config needs an OpenSearch sink")

    def echo(m: str) -> None:
        click.echo(m, err=as_json)

    with _cluster_errors(sink_cfg):  # options: the other click options, as _register's keyword arguments
        planned, records, registry, pipeline = _register(cfg, sink_cfg, sink.index if sink else None, echo=echo, **options)
    _print_registration(planned, records, registry, pipeline, sink_cfg, as_json)
    from neural_ingest.ml_commons import deploy_failures

    failures = deploy_failures(records) if options["deploy"] else []
    if failures:
        raise UserError("; ".join(failures) + f" (model ids recorded in {registry.path}; run again to retry the deploy)")


def _cluster(cfg: Any, host: str | None, config: str) -> tuple[Any, Any]:
    """(the config's OpenSearch sink or None, the sink config to reach the cluster with: --host wins)."""
    from neural_ingest.config import OpenSearchSinkConfig

    sink = cfg.sink if isinstance(cfg.sink, OpenSearchSinkConfig) else None
    if host:
        return sink, (sink or OpenSearchSinkConfig(index="unused")).model_copy(update={"hosts": [host]})
    if sink:
        return sink, sink
    raise UserError(f"{config}: the sink is not OpenSearch, so give the cluster with --host URL")


@contextmanager
def _cluster_errors(sink_cfg: Any) -> Iterator[None]:
    """ML Commons' and the cluster's errors as one line naming the cluster (never its password)."""
    from opensearchpy import exceptions as os_exc

    from neural_ingest.ml_commons import MLCommonsError
    from neural_ingest.redact import redact_text, redact_url

    try:
        yield
    except (MLCommonsError, ValueError) as e:
        raise UserError(str(e)) from None
    except os_exc.OpenSearchException as e:  # a cluster error we did not anticipate: still one line, no traceback
        raise UserError(
            f"OpenSearch at {redact_url(sink_cfg.hosts[0])}: {type(e).__name__}: {redact_text(str(e)[:500])}"
        ) from None


def _register(
    cfg: Any,
    sink_cfg: Any,
    index: str | None,
    *,
    model_format: str,
    artifacts: tuple[str, ...],
    from_local: bool,
    allow_local_upload: bool,
    deploy: bool,
    search_pipeline: str | None,
    state_path: str | None,
    timeout: float,
    force: bool,
    echo: Callable[[str], None],
) -> tuple[list[Any], list[Any], Any, dict[str, Any] | None]:
    """Plan the models, build or take their artifacts, register (and deploy) each once, set the search pipeline."""
    import tempfile

    from neural_ingest.catalogue import lookup
    from neural_ingest.config import encoder_field
    from neural_ingest.ml_commons import (
        MLCommons,
        MLCommonsError,
        ModelRegistry,
        build_local_artifacts,
        plan_models,
        register_models,
    )
    from neural_ingest.redact import redact_url
    from neural_ingest.sinks.opensearch_client import make_client

    planned = plan_models(cfg.encoders, encoder_field)
    with tempfile.TemporaryDirectory(prefix="neural-ingest-artifacts-") as build_dir:
        by_name = _artifact_map(artifacts, [p.entry.name for p in planned], lookup)
        if from_local:
            by_name.update(build_local_artifacts(planned, Path(build_dir), set(by_name), echo=echo))
        ml = MLCommons(make_client(sink_cfg, timeout=max(timeout, 30.0)), timeout=timeout)
        ml.check_plugin()
        if search_pipeline and index and not ml.client.indices.exists(index=index):
            raise MLCommonsError(
                f"--search-pipeline: index {index} does not exist yet, so its default search pipeline cannot be "
                "set: run `neural-ingest run` first (or register without --search-pipeline)"
            )
        if by_name and allow_local_upload:
            ml.allow_local_upload()
        registry = ModelRegistry(state_path)
        records = register_models(
            ml,
            registry,
            redact_url(sink_cfg.hosts[0]),
            planned,
            model_format=model_format,
            artifacts=by_name,
            deploy=deploy,
            force=force,
            echo=echo,
        )
    pipeline = None
    if search_pipeline and index:
        ids = {r.name: r.model_id for r in records}
        field_models = {f: ids[p.entry.name] for p in planned for f in p.query_for}
        ml.put_search_pipeline(search_pipeline, field_models, next(iter(field_models.values())))
        ml.set_default_pipeline(index, search_pipeline)
        pipeline = {"name": search_pipeline, "index": index, "fields": field_models}
    return planned, records, registry, pipeline


def _print_registration(
    planned: list[Any], records: list[Any], registry: Any, pipeline: dict[str, Any] | None, sink_cfg: Any, as_json: bool
) -> None:
    from neural_ingest.redact import redact_url

    if as_json:
        from dataclasses import asdict

        click.echo(
            json.dumps(
                {
                    "cluster": redact_url(sink_cfg.hosts[0]),
                    "state_file": str(registry.path),
                    "models": [asdict(r) for r in records],
                    "search_pipeline": pipeline,
                },
                indent=2,
            )
        )
        return
    ids = {r.name: r.model_id for r in records}
    for r in records:
        click.echo(f"{r.name}: model_id {r.model_id} ({r.state})")
    for p in planned:
        for f in p.query_for:
            click.echo(f"field {f!r}: queries use model_id {ids[p.entry.name]} ({p.entry.function_name})")
    if pipeline:
        click.echo(f"search pipeline {pipeline['name']} is the default of index {pipeline['index']}")
    click.echo(f"recorded in {registry.path}")


def _artifact_map(values: tuple[str, ...], names: list[str], lookup: Any) -> dict[str, Path]:
    """``--artifact`` values -> {catalogue name: zip}; a bare ZIP needs exactly one model to register."""
    out: dict[str, Path] = {}
    for v in values:
        name, sep, path = v.rpartition("=")
        if not sep:
            if len(names) != 1:
                raise ValueError(
                    f"--artifact {v}: this config registers {len(names)} models ({', '.join(names)}): write NAME=ZIP"
                )
            name, path = names[0], v
        entry = lookup(name)
        if entry is None or entry.name not in names:
            raise ValueError(f"--artifact {v}: {name!r} is not one of the models to register ({', '.join(names)})")
        out[entry.name] = Path(path)
    return out
