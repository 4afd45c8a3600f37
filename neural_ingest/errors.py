"""The root of every error neural-ingest raises on purpose, as httpx has one: catch `NeuralIngestError` to
handle them all. Each class also keeps the built-in base it had (ValueError, KeyError, RuntimeError...), so
code that caught those still does.

    NeuralIngestError
    ├── ConfigError (ValueError)               config.base: a config field is wrong; the message names it and the fix
    │   └── RemoteSetupError                   encoders.remote.client: a remote encoder cannot be set up
    ├── ModelNotFoundError (FileNotFoundError) model_resolve: no local weights for a model name
    ├── UnknownModelError (KeyError)           catalogue: a name that is not in the catalogue
    ├── ModelMismatchError (ValueError)        catalogue: loaded weights disagree with the catalogue entry
    ├── MetadataError (ValueError)             metadata: a record's metadata cannot be stored (a dead letter's reason)
    ├── PathError (ValueError)                 encoders.remote.jsonpath: a response path that does not resolve
    ├── EncodeError (RuntimeError)             encoders.base: an encoder failed on a batch or a document
    │   └── RemoteError                        encoders.remote.client: the remote service failed
    ├── SourceReadError (RuntimeError)         transforms.read_opensearch: the source index cannot be read
    ├── MLCommonsError (RuntimeError)          ml_commons: an ML Commons call failed (register, deploy, predict)
    └── SinkError (RuntimeError)               sinks.base: the sink refused or cannot be reached
        ├── LockHeld, LockLost                 sinks.lock: another run holds (or took) the reindex lock: exit 5
        └── ReindexError                       pipelines.reindex: the blue/green build cannot go on

Which of them a user can fix (exit 2) and which mean a bug (exit 1) is `neural_ingest.exit_codes`.
"""
from __future__ import annotations


class NeuralIngestError(Exception):
    """Root of every error neural-ingest raises on purpose."""
