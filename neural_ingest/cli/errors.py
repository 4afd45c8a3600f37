"""The CLI's one error path: every command raises, `ErrorHandlingGroup` turns the exception into one line
and an exit code (`neural_ingest.exit_codes`, the README's table). Commands never print tracebacks."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from neural_ingest.cli import logs

if TYPE_CHECKING:
    from neural_ingest.config import PipelineConfig


class UserError(click.ClickException):
    """A problem the user can fix, said in one line naming the option or field: exit 2."""

    exit_code = 2


@contextmanager
def user_errors(*types: type[BaseException]) -> Iterator[None]:
    """Treat these exception types as the user's to fix within the block (one line, exit 2). The types
    `exit_codes.user_error_types` lists are already treated so everywhere, by the group."""
    try:
        yield
    except types as e:
        raise UserError(str(e)) from None


def load_config(config: str, overrides: tuple[str, ...]) -> PipelineConfig:
    """CONFIG with its --set overrides, validated; a bad field is a UserError naming it."""
    from neural_ingest.config import ConfigError
    from neural_ingest.config import load_config as load

    with user_errors(ConfigError):
        return load(config, list(overrides))


class ErrorHandlingGroup(click.Group):
    """Every command's errors take one path: user errors -> one line, exit 2; a held or lost lock -> one
    line, exit 5; anything else is a bug: one line, exit 1 (the traceback with -v)."""

    def invoke(self, ctx: click.Context) -> Any:
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
            if code in (exit_codes.USER, exit_codes.LOCKED):  # our own message, whole (a config error lists fields)
                from neural_ingest.redact import redact_text

                click.echo(f"Error: {redact_text(str(e)) or type(e).__name__}", err=True)
            else:
                if logs.VERBOSE:
                    import traceback

                    traceback.print_exc(file=sys.stderr)
                click.echo(
                    f"Error: internal error: {exit_codes.one_line(e)} (a bug: please report it; -v shows the traceback)", err=True
                )
            sys.exit(code)
