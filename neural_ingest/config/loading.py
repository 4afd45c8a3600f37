"""YAML in, PipelineConfig out: ${ENV} interpolation, --set overrides, readable validation errors."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from neural_ingest.config.base import ConfigError
from neural_ingest.config.pipeline import PipelineConfig
from neural_ingest.config.remote_encoders import EncoderConfig
from neural_ingest.config.sinks import SinkConfig
from neural_ingest.config.sources import AnySourceConfig

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate_env(value: Any, *, where: str = "") -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {k: interpolate_env(v, where=f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate_env(v, where=f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def _sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable {name} is not set; export {name}=... or write ${{{name}:-default}}")

    return _ENV_PATTERN.sub(_sub, value)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML scalars, so 64 is an int)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.path=value, e.g. --set encoders.0.batch_size=64")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw else ""
        node: Any = data
        parts = key.split(".")
        for part in parts[:-1]:
            if isinstance(node, list):
                node = node[int(part)]
            else:
                if part == "encoders" and "encoder" in node and "encoders" not in node:
                    node["encoders"] = [node.pop("encoder")]
                node = node.setdefault(part, {})
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return data


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: the config is not valid:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not (isinstance(p, str) and p in _discriminator_tags()))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field: remove it or check its spelling"
        elif e["type"] == "missing":
            msg = "required field is missing: add it"
        elif e["type"] == "literal_error":
            msg = f"{msg} (got {e.get('input')!r})"
        elif e["type"] == "union_tag_invalid":
            # The message names the tag; the input is the whole block, which may hold a password.
            msg = f"unknown type {e.get('ctx', {}).get('tag')!r}: expected one of {e.get('ctx', {}).get('expected_tags')}"
        lines.append(f"  - {loc or '(root)'}: {msg}")
    return "\n".join(lines)


def _discriminator_tags() -> set[str]:
    """The `type` values of every union member: pydantic puts them in error locations; users don't write them."""
    import typing

    tags: set[str] = set()
    for union in (EncoderConfig, SinkConfig, AnySourceConfig):
        inner = typing.get_args(union)[0]
        for member in typing.get_args(inner) or (inner,):
            tags.update(typing.get_args(member.model_fields["type"].annotation))
    return tags


def parse_config(data: dict[str, Any], *, source: str = "config") -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a YAML config, interpolate ``${ENV}``, apply ``--set`` overrides and validate.

    Relative source/sink paths are resolved against the current directory, as users type them.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    data = apply_overrides(data, overrides or [])
    data = interpolate_env(data)
    return parse_config(data, source=str(path))
