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
from neural_ingest.tls import warn_insecure

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


def _secret_fields() -> tuple[frozenset[str], frozenset[str]]:
    """The config's secret fields, read from the models' types so a new one is covered without a list
    to keep: names typed ``SecretStr`` (password, api_key) and names typed ``dict[str, SecretStr]``
    (headers, credential), whose every value is a secret."""
    import typing

    from pydantic import BaseModel, SecretStr

    fields: set[str] = set()
    maps: set[str] = set()
    seen: set[type] = set()

    def flat(t: Any) -> list[Any]:
        args = typing.get_args(t)
        return [t] if not args else [x for a in args for x in flat(a)] + [typing.get_origin(t)]

    def visit(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, f in model.model_fields.items():
            ann = f.annotation
            if typing.get_origin(ann) is dict and SecretStr in flat(typing.get_args(ann)[1]):
                maps.add(name)
            elif SecretStr in flat(ann):
                fields.add(name)
            for t in flat(ann):
                if isinstance(t, type) and issubclass(t, BaseModel):
                    visit(t)

    visit(PipelineConfig)
    return frozenset(fields), frozenset(maps)


SECRET_FIELDS, SECRET_MAPS = _secret_fields()


def is_secret_key(parts: list[str]) -> bool:
    """Whether a --set key path ends in a secret: a SecretStr field, or a value of a secret mapping."""
    return parts[-1] in SECRET_FIELDS or (len(parts) > 1 and parts[-2] in SECRET_MAPS)


def _kind(value: Any) -> str:
    """A value's kind for messages (never the value itself: it may be a secret)."""
    if isinstance(value, bool):
        return "a true/false value"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a text value"
    return f"a {type(value).__name__} value"


def _index(key: str, where: str, items: list[Any], part: str) -> int:
    n = len(items)
    span = f"use 0..{n - 1}" if n else "it is empty"
    if not part.isdigit():
        raise ConfigError(f"--set {key}: {where} is a list, so {part!r} is not an item of it ({span}), e.g. --set {where}.0")
    if int(part) >= n:
        raise ConfigError(
            f"--set {key}: {where} has {n} item{'s' if n != 1 else ''}, so {part} is out of range ({span}); "
            f"to change the list, set it whole: --set '{where}=[...]'"
        )
    return int(part)


def _step(node: Any, key: str, parts: list[str], depth: int) -> Any:
    """The child of ``node`` named ``parts[depth]``, created as a section when it is missing or null."""
    part, where = parts[depth], ".".join(parts[:depth]) or "(the top level)"
    here = ".".join(parts[: depth + 1])
    if isinstance(node, list):
        child = node[_index(key, where, node, part)]
        if child is None:
            child = node[int(part)] = {}
    else:
        if part == "encoders" and "encoder" in node and "encoders" not in node:
            node["encoders"] = [node.pop("encoder")]
        child = node.get(part)
        if child is None:
            child = node[part] = {}
    if not isinstance(child, (dict, list)):
        raise ConfigError(f"--set {key}: {here} is {_kind(child)}, not a section: set {here} itself, e.g. --set {here}=...")
    return child


def _parse_value(key: str, parts: list[str], raw: str) -> Any:
    if is_secret_key(parts):
        return raw  # verbatim: a password may hold [ # : or look like a number; ${ENV} is still expanded
    if raw == "":
        return ""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(
            f"--set {key}: the value is not valid YAML (an unclosed bracket, brace or quote?): "
            f"fix it, or quote it to mean plain text: --set '{key}=\"...\"'"
        ) from None


def _key_of(item: str) -> str:
    """The key-like start of a --set argument that has no '=' (up to a ':' or space, never a value after it)."""
    m = re.match(r"[A-Za-z0-9_.\-]*", item)
    return m.group(0) if m and m.group(0) else "(an argument)"


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML, so 64 is an int; secret fields are
    taken verbatim). Each problem is one ConfigError line naming the key; no value is ever echoed."""
    for item in overrides:
        try:
            _apply_one(data, item)
        except ConfigError as e:  # a key typed with a newline or control character still makes one line
            msg = str(e)
            raise ConfigError(msg if msg.isprintable() else msg.encode("unicode_escape").decode("ascii")) from None
    return data


def _apply_one(data: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {_key_of(item)}: expected key.path=value, e.g. --set encoders.0.batch_size=64")
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(
            f"--set {key}: the key path has an empty part (two dots, or a dot at an end): write it like sink.bulk.max_docs"
        )
    value = _parse_value(key, parts, raw)
    node: Any = data
    for depth in range(len(parts) - 1):
        node = _step(node, key, parts, depth)
    last = parts[-1]
    if isinstance(node, list):
        node[_index(key, ".".join(parts[:-1]), node, last)] = value
    else:
        if last == "encoders" and "encoder" in node:
            node.pop("encoder")  # the whole list replaces the single-encoder shorthand
        node[last] = value


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
    cfg = parse_config(data, source=str(path))
    warn_insecure(cfg)  # on every command that loads it: certificate checks off is never silent
    return cfg
