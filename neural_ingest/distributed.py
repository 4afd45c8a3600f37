"""What a run needs when its workers are not this process: on Flink, Spark, Dataflow or the
multi-process DirectRunner, workers run with another working directory (or on another machine),
so a relative path the user typed must be made absolute before the pipeline is pickled.
"""
from __future__ import annotations

import os
from typing import Any

# Config fields that name local files or directories, on any config block that has them.
PATH_FIELDS = ("path", "model_path", "models_dir", "idf_path", "vocab_path", "ca_certs")


def _is_relative_local(value: Any) -> bool:
    return (
        isinstance(value, str) and bool(value) and "://" not in value and not os.path.isabs(value) and not value.startswith("~")
    )


def _absolute(block: Any, base: str) -> Any:
    fields = getattr(type(block), "model_fields", {})
    update = {
        f: os.path.normpath(os.path.join(base, getattr(block, f)))
        for f in PATH_FIELDS
        if f in fields and _is_relative_local(getattr(block, f))
    }
    # `model` is a catalogue name or a directory: only a directory that exists here is a path.
    if "model" in fields and _is_relative_local(block.model) and os.path.isdir(os.path.join(base, block.model)):
        update["model"] = os.path.normpath(os.path.join(base, block.model))
    return block.model_copy(update=update) if update else block


def absolute_paths(cfg: Any, base: str | None = None) -> Any:
    """A copy of ``cfg`` whose relative local paths (source, sink, dead letters, model files, CA
    certificates) are resolved against ``base`` (default: the current directory). URLs (gs://, s3://,
    http://) and absolute paths are kept as they are."""
    base = base or os.getcwd()
    return cfg.model_copy(
        update={
            "source": _absolute(cfg.source, base),
            "encoders": [_absolute(e, base) for e in cfg.encoders],
            "sink": _absolute(cfg.sink, base),
            "dead_letter": _absolute(cfg.dead_letter, base),
        }
    )
