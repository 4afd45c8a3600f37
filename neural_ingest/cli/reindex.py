"""`neural-ingest reindex` and `neural-ingest rollback`: blue/green builds behind an alias.

Exit codes: 0 swapped (or a dry run), 2 a problem to fix (config, cluster, alias), 3 never (the
error budget is part of validation here), 4 validation failed (the alias was not touched, the new
index is kept for inspection; also when the new index is much smaller than the live one: the shrink
guard, --allow-shrink for a planned drop), 5 another run holds the lock.
"""
from __future__ import annotations

import json
import sys

import click

from neural_ingest.cli.errors import load_config


@click.command("reindex", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a config value.")
@click.option(
    "--summary", "summary_path", type=click.Path(dir_okay=False), help="Also write the summary (with a reindex section) as JSON."
)
@click.option(
    "--dry-run", is_flag=True, help="Print the plan (alias, new index, reuse, validation, retention, lock); change nothing."
)
@click.option(
    "--wait",
    type=float,
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Wait this long for another run's lock; 0 exits at once (code 5).",
)
@click.option("--full", is_flag=True, help="Encode every document again (no vector reuse).")
@click.option(
    "--replace-index",
    is_flag=True,
    help="The alias name is taken by a real index: reuse its vectors, then delete it in the swap request.",
)
@click.option(
    "--allow-shrink",
    is_flag=True,
    help="A planned drop: swap even when the new index has fewer documents than reindex.validation."
    "max_deleted_ratio / min_documents allow against the live index.",
)
@click.argument("beam_args", nargs=-1, type=click.UNPROCESSED)
def reindex(
    config: str,
    overrides: tuple[str, ...],
    summary_path: str | None,
    dry_run: bool,
    wait: float,
    full: bool,
    replace_index: bool,
    allow_shrink: bool,
    beam_args: tuple[str, ...],
) -> None:
    """Build <alias>-<UTC timestamp> from CONFIG's source, validate it, and swap the alias to it.

    Unchanged documents reuse the live index's vectors (reindex.incremental); documents gone from the
    source are left out. Extra arguments (e.g. --runner) go to Beam.
    """
    from neural_ingest.pipelines.reindex import EXIT_LOCKED, LockLost
    from neural_ingest.pipelines.reindex import reindex as do_reindex

    cfg = load_config(config, overrides)
    try:  # a held lock, and any other error, take the group's path (one line, its exit code)
        result = do_reindex(
            cfg,
            list(beam_args),
            summary_path,
            dry_run=dry_run,
            wait=wait,
            full=full,
            replace_index=replace_index,
            allow_shrink=allow_shrink,
            echo=click.echo,
            config_path=config,
        )
    except LockLost as e:
        click.echo(f"Error: {e}; the alias was not touched", err=True)
        sys.exit(EXIT_LOCKED)
    if result.status == "dry_run":
        return
    summary = result.summary
    if summary is None:  # only a dry run has none
        raise RuntimeError(f"reindex ended {result.status} without a run summary")
    summary.render()
    for check in result.validation.checks if result.validation else []:
        click.echo(f"validation {check.name}: {'ok' if check.ok else 'FAILED'}: {check.detail}")
    if not summary.reconciles:
        raise click.ClickException("counts do not reconcile (read != indexed + failed + skipped): please report this")
    if result.status == "validation_failed":
        shrink = [c.detail for c in result.validation.failures() if c.name == "shrink"] if result.validation else []
        click.echo(
            f"Error: validation failed: alias {result.plan.alias} still points to {result.plan.live or 'nothing'}; "
            f"{result.plan.new_index} is kept for inspection. {''.join(f'Shrink guard: {d}. ' for d in shrink)}"
            f"Dead letters: {summary.dead_letter_path}",
            err=True,
        )
        sys.exit(result.exit_code)
    click.echo(
        f"reindexed: {result.plan.alias} -> {result.plan.new_index} ({result.plan.mode}; encoded {summary.encoded}, "
        f"reused {summary.reused}, deleted {summary.deleted})"
        + (f"; removed {len(result.removed_unfinished)} indices left by unfinished runs" if result.removed_unfinished else "")
    )


@click.command("rollback")
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
@click.option("--dry-run", is_flag=True, help="Print where the alias would go; change nothing.")
@click.option("--wait", type=float, default=0.0, show_default=True, metavar="SECONDS", help="Wait this long for the lock.")
@click.option("--json", "as_json", is_flag=True, help='Print {"alias", "from", "to", "actions"}.')
def rollback(config: str, overrides: tuple[str, ...], dry_run: bool, wait: float, as_json: bool) -> None:
    """Point CONFIG's alias back to the previous validated index, in one _aliases request."""
    from neural_ingest.pipelines.reindex import rollback as do_rollback

    r = do_rollback(load_config(config, overrides), dry_run=dry_run, wait=wait)  # a held lock: the group's path, exit 5
    if as_json:
        click.echo(
            json.dumps({"alias": r.alias, "from": r.from_index, "to": r.to_index, "actions": r.actions, "dry_run": r.dry_run})
        )
    elif dry_run:
        click.echo(f"would point {r.alias} from {r.from_index} back to {r.to_index}: {r.actions}")
    else:
        click.echo(f"rolled back: {r.alias} -> {r.to_index} (was {r.from_index})")
