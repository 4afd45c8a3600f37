"""The `neural-ingest` command line."""
from __future__ import annotations

import json
import logging
import os
import sys

import click

from neural_ingest import __version__

KNN_MAX_K = 10_000  # = neural_ingest.config.sinks.KNN_MAX_K (not imported: the CLI, and each shell completion, load fast)


_VERBOSE = False
_QUIET = False


def _setup_logging(verbose: bool, quiet: bool = False) -> None:
    """Logs and progress on stderr (results go to stdout); INFO by default, so progress shows.

    Client libraries (opensearch-py, urllib3) log every failed request with a traceback: without -v
    they stay quiet (ERROR), our own warnings say what happened in one line, and no traceback is shown.
    """
    from neural_ingest.redact import install_log_redaction

    install_log_redaction()  # credentials in URLs out of every log line and traceback, any library's
    global _VERBOSE, _QUIET
    _VERBOSE, _QUIET = verbose, quiet
    tty = sys.stderr.isatty()
    handler: logging.Handler
    if tty:
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False, markup=False)
        fmt, datefmt = "%(message)s", None
    else:  # a log file or a CronJob's log: one plain line per event, no wrapping
        handler = logging.StreamHandler(sys.stderr)
        fmt, datefmt = "%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"
    handler.setFormatter(logging.Formatter(fmt, datefmt) if verbose else _OneLineFormatter(fmt, datefmt))
    # Beam's GCP IO says this on import when its optional extras are absent: not the user's concern.
    handler.addFilter(lambda r: "apitools not found" not in r.getMessage())
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    for noisy in ("apache_beam", "sentence_transformers", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    for client in ("opensearch", "urllib3"):  # one line per failed request, with a traceback: -v only
        logging.getLogger(client).setLevel(logging.DEBUG if verbose else logging.ERROR)
    # after the handler: importing Beam logs
    from neural_ingest.transforms.counters import Progress

    Progress.display = "off" if quiet else "bar" if tty else "log"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class _OneLineFormatter(logging.Formatter):
    """Without -v a log record is its one line: tracebacks only with -v. Formats a copy, so other handlers
    (a log file, pytest's capture) still get the record whole."""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None, "stack_info": None})
        return super().format(record)


def _load(config: str, overrides: tuple[str, ...]):
    from neural_ingest.config import ConfigError, load_config

    try:
        return load_config(config, list(overrides))
    except ConfigError as e:
        raise _UserError(str(e)) from None


class _UserError(click.ClickException):
    exit_code = 2


def _user_errors():
    """Errors a user can fix, shown as one message instead of a traceback."""
    from neural_ingest.exit_codes import user_error_types

    return user_error_types()


class _Group(click.Group):
    """Every command's errors take one path: user errors -> one line, exit 2; anything else is a bug:
    one line, exit 1 (the traceback with -v). The README's exit-code table is this."""

    def invoke(self, ctx: click.Context):
        from neural_ingest import exit_codes

        try:
            return super().invoke(ctx)
        except click.BadParameter as e:
            if not isinstance(e, click.MissingParameter):  # a bad value: one line naming the option, no usage text
                e.ctx = None
            raise
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            sys.exit(exit_codes.INTERRUPTED)
        except Exception as e:  # noqa: BLE001 - the one place that turns an exception into an exit code
            code = exit_codes.exit_code_for(e)
            if code == exit_codes.USER:
                click.echo(f"Error: {exit_codes.one_line(e)}", err=True)
            else:
                if _VERBOSE:
                    import traceback

                    traceback.print_exc(file=sys.stderr)
                click.echo(
                    f"Error: internal error: {exit_codes.one_line(e)} (a bug: please report it; -v shows the traceback)", err=True
                )
            sys.exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="neural-ingest")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging, including Beam's, and tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only; no progress.")
def main(verbose: bool, quiet: bool) -> None:
    """Batch embedding ETL for OpenSearch semantic search, on Apache Beam.

    Logs and progress go to stderr, results (search hits, --json) to stdout. Exit codes: 0 ok, 1 a bug,
    2 a problem to fix (config, input, model, cluster), 3 error budget spent, 4 reindex validation failed,
    5 lock held.
    """
    _setup_logging(verbose, quiet)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a config value.")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False), help="Also write the summary as JSON here.")
@click.argument("beam_args", nargs=-1, type=click.UNPROCESSED)
def run(config: str, overrides: tuple[str, ...], summary_path: str | None, beam_args: tuple[str, ...]) -> None:
    """Run the ingest pipeline CONFIG describes. Extra arguments (e.g. --runner) go to Beam."""
    from neural_ingest.pipelines.ingest import run_ingest

    cfg = _load(config, overrides)
    try:
        summary = run_ingest(cfg, list(beam_args), summary_path, config_path=config)
    except _user_errors() as e:
        raise _UserError(str(e)) from None
    _finish(summary)


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.argument("query")
@click.option("-k", type=click.IntRange(min=1), default=10, show_default=True,
              help=f"Number of results, at least 1 (OpenSearch: at most {KNN_MAX_K:,}).")
@click.option("--json", "as_json", is_flag=True, help='Print [{"id", "score"}, ...], best first.')
@click.option(
    "--mode",
    type=click.Choice(["dense", "sparse", "hybrid"]),
    default=None,
    help="dense: k-NN; sparse: neural_sparse / rank_feature; hybrid: both, normalised and combined. "
    "Default: the first encoder's kind.",
)
@click.option(
    "--weights", "hybrid_weights", default=None, metavar="DENSE,SPARSE", help="Hybrid combination weights [0.5,0.5]."
)
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
def search(
    config: str, query: str, k: int, as_json: bool, mode: str | None, hybrid_weights: str | None, overrides: tuple[str, ...]
) -> None:
    """Search the configured sink with QUERY encoded by the pipeline's own model.

    A missing index, alias or dataset exits 2 with one line; no hits prints one line on stderr (and [] with
    --json) and exits 0."""
    from neural_ingest.search import no_hits_reason
    from neural_ingest.search import search as do_search

    cfg = _load(config, overrides)
    if cfg.sink.type == "opensearch" and k > KNN_MAX_K:
        raise click.BadParameter(f"{k} is more than OpenSearch returns for one query ({KNN_MAX_K:,}): use -k {KNN_MAX_K} or less",
                                 param_hint="'-k'")
    search_mode = mode or str(getattr(cfg.encoders[0], "kind", "dense"))
    weights = _hybrid_weights(hybrid_weights) if hybrid_weights else None
    try:
        hits = do_search(cfg, query, k=k, mode=search_mode, weights=weights)
        if not hits:
            click.echo(f"no hits for {query!r}: {no_hits_reason(cfg, search_mode)}", err=True)
    except (*_user_errors(), ValueError) as e:
        raise _UserError(str(e)) from None
    if as_json:
        rows = []
        for h in hits:
            row = {"id": h.id, "score": round(h.score, 6)}
            if h.passage is not None:  # chunked index: the document's best chunk
                row["passage"] = {k: h.passage.get(k) for k in ("text", "start", "end", "index")}
            rows.append(row)
        click.echo(json.dumps(rows))
        return
    if not hits:
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text  # plain text: brackets in a document are not markup

    text_field = getattr(cfg.sink, "text_field", "text")
    t = Table(title=f"{query!r} on {cfg.sink.describe()}")
    for col in ("#", "id", "score", "text"):
        t.add_column(col)
    for i, h in enumerate(hits, 1):
        text = " ".join(str(h.source.get(text_field, "")).split())
        if h.passage is not None:  # chunked index: show the best passage, not the document's start
            text = f"(chunk {h.passage.get('index')}) " + " ".join(str(h.passage.get("text") or "").split())
        t.add_row(str(i), h.id, f"{h.score:.4f}", Text(text[:100] + ("…" if len(text) > 100 else "")))
    Console().print(t)


def _hybrid_weights(text: str) -> tuple[float, float]:
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 2 or min(values) < 0 or sum(values) <= 0:
        raise _UserError(f"--weights {text!r}: expected two non-negative numbers DENSE,SPARSE, e.g. 0.3,0.7")
    return values[0], values[1]


def _finish(summary) -> None:
    """Print the summary (stderr); exit 1 when counts do not reconcile (a bug), 3 when the error budget is spent."""
    from neural_ingest import exit_codes

    if not _QUIET or summary.status != "succeeded" or summary.warnings:  # -q: the summary only when it has news
        summary.render()
    if not summary.reconciles:
        raise click.ClickException("counts do not reconcile (read != indexed + failed + skipped): please report this")
    if summary.error_budget:
        click.echo(f"Error: the run failed its error budget: {summary.error_budget}. Dead letters: {summary.dead_letter_path}", err=True)
        sys.exit(exit_codes.ERROR_BUDGET)


@main.group()
def dlq() -> None:
    """Dead-letter files: replay them after fixing the cause."""


@dlq.command("replay", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("dlq_path")
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False))
@click.argument("beam_args", nargs=-1, type=click.UNPROCESSED)
def dlq_replay(dlq_path: str, config: str, overrides: tuple[str, ...], summary_path: str | None, beam_args: tuple[str, ...]) -> None:
    """Re-run the records in DLQ_PATH (a run's dead-letter directory, a dead-letters*.jsonl file or a glob) with
    CONFIG, adding them to what the sink holds: a document with the same id is replaced, nothing is removed.
    Fix a record first by editing its dead letter ("line" for JSONL, "row" for CSV). Exit 0: replayed;
    2: nothing to replay or a config / sink problem; 3: error budget spent, or the sink holds fewer rows after."""
    from neural_ingest.pipelines.replay import replay

    cfg = _load(config, overrides)
    try:
        summary = replay(dlq_path, cfg, list(beam_args), summary_path, config_path=config)
    except (*_user_errors(), FileNotFoundError, ValueError) as e:
        raise _UserError(str(e)) from None
    if summary.sink_shrank:
        summary.render()
        click.echo(
            f"Error: {summary.sink} held {summary.sink_rows_before:,} rows before the replay and {summary.sink_rows_after:,} "
            "after; a replay only adds, so something else removed rows: check what else writes there",
            err=True,
        )
        sys.exit(3)
    _finish(summary)


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
def validate(config: str, overrides: tuple[str, ...]) -> None:
    """Check CONFIG, the models and (for OpenSearch) the cluster and any existing index. Encodes nothing."""
    from neural_ingest.pipelines.ingest import check_source, prepare

    cfg = _load(config, overrides)
    try:
        source = check_source(cfg.source)
        prep = prepare(cfg)
    except _user_errors() as e:
        raise _UserError(str(e)) from None
    if source:
        click.echo(f"source ok: {source}")
    for f, info in prep.fields.items():
        click.echo(f"model ok: {info.name} -> field {f!r} ({info.kind}, dim={info.dimension}, space={info.space_type})")
    problems = prep.sink.check(prep.fields)
    if problems:
        raise _UserError("sink check failed:\n  - " + "\n  - ".join(problems))
    click.echo(f"sink ok: {prep.sink.describe()}")
    click.echo("config is valid")


PROG = "neural-ingest"  # the console script (pyproject [project.scripts])
COMPLETE_VAR = "_NEURAL_INGEST_COMPLETE"  # click's variable for PROG: its completion scripts call PROG with it set


@main.command()
@click.argument("shell", required=False, type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str | None) -> None:
    """Print the shell completion script for SHELL (default: $SHELL's), e.g. eval "$(neural-ingest completion bash)"."""
    from click.shell_completion import get_completion_class

    shell = shell or os.path.basename(os.environ.get("SHELL", ""))
    comp_cls = get_completion_class(shell) if shell in ("bash", "zsh", "fish") else None
    if comp_cls is None:
        raise _UserError(f"cannot tell the shell from $SHELL ({shell or 'not set'}): name it, e.g. neural-ingest completion bash")
    click.echo(comp_cls(main, {}, PROG, COMPLETE_VAR).source(), nl=False)


# The commands kept in modules of their own: `init` (a starter config), `models` (catalogue, ML Commons),
# `reindex` / `rollback` (blue/green behind an alias).
from neural_ingest.cli_init import init as _init

main.add_command(_init)

from neural_ingest.cli_models import models as _models

main.add_command(_models)

from neural_ingest.cli_reindex import reindex as _reindex
from neural_ingest.cli_reindex import rollback as _rollback

main.add_command(_reindex)
main.add_command(_rollback)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(prog_name=PROG))  # python -m neural_ingest.cli: the same name, so completion works alike
