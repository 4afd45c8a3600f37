"""The `neural-ingest` command group: global options, the commands, shell completion."""
from __future__ import annotations

import os

import click

from neural_ingest import __version__
from neural_ingest.cli.errors import ErrorHandlingGroup, UserError
from neural_ingest.cli.ingest import dlq, run, validate
from neural_ingest.cli.init import init
from neural_ingest.cli.logs import setup_logging
from neural_ingest.cli.models import models
from neural_ingest.cli.reindex import reindex, rollback
from neural_ingest.cli.search import search

PROG = "neural-ingest"  # the console script (pyproject [project.scripts])
COMPLETE_VAR = "_NEURAL_INGEST_COMPLETE"  # click's variable for PROG: its completion scripts call PROG with it set


@click.group(cls=ErrorHandlingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="neural-ingest")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging, including Beam's, and tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only; no progress.")
def main(verbose: bool, quiet: bool) -> None:
    """Batch embedding ETL for OpenSearch semantic search, on Apache Beam.

    Logs and progress go to stderr, results (search hits, --json) to stdout. Exit codes: 0 ok, 1 a bug,
    2 a problem to fix (config, input, model, cluster), 3 error budget spent, 4 reindex validation failed,
    5 lock held.
    """
    setup_logging(verbose, quiet)


@click.command()
@click.argument("shell", required=False, type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str | None) -> None:
    """Print the shell completion script for SHELL (default: $SHELL's), e.g. eval "$(neural-ingest completion bash)"."""
    from click.shell_completion import get_completion_class

    shell = shell or os.path.basename(os.environ.get("SHELL", ""))
    comp_cls = get_completion_class(shell) if shell in ("bash", "zsh", "fish") else None
    if comp_cls is None:
        raise UserError(f"cannot tell the shell from $SHELL ({shell or 'not set'}): name it, e.g. neural-ingest completion bash")
    click.echo(comp_cls(main, {}, PROG, COMPLETE_VAR).source(), nl=False)


for _command in (run, search, dlq, validate, completion, init, models, reindex, rollback):
    main.add_command(_command)
