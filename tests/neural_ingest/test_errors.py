"""Every error the tool raises on purpose has one root, and keeps the built-in base callers caught before."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import neural_ingest
from neural_ingest.errors import NeuralIngestError

KEPT_BASES = {
    "neural_ingest.config.base.ConfigError": ValueError,
    "neural_ingest.encoders.remote.client.RemoteSetupError": ValueError,
    "neural_ingest.model_resolve.ModelNotFoundError": FileNotFoundError,
    "neural_ingest.catalogue.UnknownModelError": KeyError,
    "neural_ingest.catalogue.ModelMismatchError": ValueError,
    "neural_ingest.metadata.MetadataError": ValueError,
    "neural_ingest.encoders.remote.jsonpath.PathError": ValueError,
    "neural_ingest.encoders.base.EncodeError": RuntimeError,
    "neural_ingest.encoders.remote.client.RemoteError": RuntimeError,
    "neural_ingest.transforms.read_opensearch.SourceReadError": RuntimeError,
    "neural_ingest.ml_commons.MLCommonsError": RuntimeError,
    "neural_ingest.sinks.base.SinkError": RuntimeError,
    "neural_ingest.sinks.lock.LockHeld": RuntimeError,
    "neural_ingest.sinks.lock.LockLost": RuntimeError,
    "neural_ingest.pipelines.reindex.ReindexError": RuntimeError,
}


def _class(dotted: str) -> type:
    module, name = dotted.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("dotted", sorted(KEPT_BASES))
def test_each_error_has_the_root_and_its_old_base(dotted):
    cls = _class(dotted)
    assert issubclass(cls, NeuralIngestError) and issubclass(cls, KEPT_BASES[dotted])


def test_the_hierarchy_is_documented_and_complete():
    """A new public exception class anywhere in the package must join the root and the documented tree."""
    from neural_ingest import errors

    found = set()
    for info in pkgutil.walk_packages(neural_ingest.__path__, "neural_ingest."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == info.name
                    and not name.startswith("_") and obj is not NeuralIngestError):
                found.add(obj)
    cli_errors = {c for c in found if c.__module__.startswith("neural_ingest.cli")}  # click's own protocol
    public = found - cli_errors
    assert public and all(issubclass(c, NeuralIngestError) for c in public), [
        c for c in public if not issubclass(c, NeuralIngestError)
    ]
    assert all(c.__name__ in errors.__doc__ for c in public)


def test_unknown_model_error_reads_as_its_message():
    from neural_ingest.catalogue import UnknownModelError

    assert str(UnknownModelError("no such model")) == "no such model"

