"""The `neural-ingest` command line: one module per command family, one error path (`errors`).

- `app`: the group, its global options (-v, -q) and `completion`;
- `ingest`: `run`, `dlq replay`, `validate`; `search`; `init`; `models`; `reindex` / `rollback`;
- `errors`: `ErrorHandlingGroup` turns any exception into one line and the exit code of `neural_ingest.exit_codes`;
- `logs`: stderr logging and progress.
"""
from neural_ingest.cli.app import COMPLETE_VAR, PROG, main
from neural_ingest.cli.search import KNN_MAX_K

__all__ = ["COMPLETE_VAR", "KNN_MAX_K", "PROG", "main"]
