"""`neural-ingest run`, `dlq replay` and `validate`: the ingest pipeline, its dead letters, and a dry check."""
from __future__ import annotations

import sys
from typing import Any

import click

from neural_ingest.cli import logs
from neural_ingest.cli.errors import UserError, load_config, user_errors


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a config value.")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False), help="Also write the summary as JSON here.")
@click.argument("beam_args", nargs=-1, type=click.UNPROCESSED)
def run(config: str, overrides: tuple[str, ...], summary_path: str | None, beam_args: tuple[str, ...]) -> None:
    """Run the ingest pipeline CONFIG describes. Extra arguments (e.g. --runner) go to Beam."""
    from neural_ingest.pipelines.ingest import run_ingest

    cfg = load_config(config, overrides)
    finish(run_ingest(cfg, list(beam_args), summary_path, config_path=config))


def finish(summary: Any) -> None:
    """Print the summary (stderr); exit 1 when counts do not reconcile (a bug), 3 when the error budget is spent."""
    from neural_ingest import exit_codes

    if not logs.QUIET or summary.status != "succeeded" or summary.warnings:  # -q: the summary only when it has news
        summary.render()
    if not summary.reconciles:
        raise click.ClickException("counts do not reconcile (read != indexed + failed + skipped): please report this")
    if summary.error_budget:
        click.echo(
            f"Error: the run failed its error budget: {summary.error_budget}. Dead letters: {summary.dead_letter_path}", err=True
        )
        sys.exit(exit_codes.ERROR_BUDGET)


@click.group()
def dlq() -> None:
    """Dead-letter files: replay them after fixing the cause."""


@dlq.command("replay", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("dlq_path")
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False))
@click.argument("beam_args", nargs=-1, type=click.UNPROCESSED)
def dlq_replay(
    dlq_path: str, config: str, overrides: tuple[str, ...], summary_path: str | None, beam_args: tuple[str, ...]
) -> None:
    """Re-run the records in DLQ_PATH (a run's dead-letter directory, a dead-letters*.jsonl file or a glob) with
    CONFIG, adding them to what the sink holds: a document with the same id is replaced, nothing is removed.
    Fix a record first by editing its dead letter ("line" for JSONL, "row" for CSV). Exit 0: replayed;
    2: nothing to replay or a config / sink problem; 3: error budget spent, or the sink holds fewer rows after."""
    from neural_ingest.pipelines.replay import replay

    cfg = load_config(config, overrides)
    with user_errors(FileNotFoundError, ValueError):  # no dead letters there, or a dead letter that is not one
        summary = replay(dlq_path, cfg, list(beam_args), summary_path, config_path=config)
    if summary.sink_shrank:
        summary.render()
        click.echo(
            f"Error: {summary.sink} held {summary.sink_rows_before:,} rows before the replay and {summary.sink_rows_after:,} "
            "after; a replay only adds, so something else removed rows: check what else writes there",
            err=True,
        )
        sys.exit(3)
    finish(summary)


@click.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
def validate(config: str, overrides: tuple[str, ...]) -> None:
    """Check CONFIG, the models and (for OpenSearch) the cluster and any existing index. Encodes nothing."""
    from neural_ingest.pipelines.ingest import check_source, prepare

    cfg = load_config(config, overrides)
    source = check_source(cfg.source)
    prep = prepare(cfg)
    if source:
        click.echo(f"source ok: {source}")
    for f, info in prep.fields.items():
        click.echo(f"model ok: {info.name} -> field {f!r} ({info.kind}, dim={info.dimension}, space={info.space_type})")
    problems = prep.sink.check(prep.fields)
    if problems:
        raise UserError("sink check failed:\n  - " + "\n  - ".join(problems))
    click.echo(f"sink ok: {prep.sink.describe()}")
    click.echo("config is valid")
