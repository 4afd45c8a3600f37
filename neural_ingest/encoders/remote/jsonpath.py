"""A small JSONPath subset for response mappings: ``$``, ``.name``, ``['name']``, ``[3]``, ``[*]``, ``.*``.

Enough for the result paths of connector blueprints, e.g. ``$.data[*].embedding`` (OpenAI),
``$.embeddings`` (Cohere), ``$.inference_results[*].output[*].data`` (ML Commons).
"""
from __future__ import annotations

import re
from typing import Any

from neural_ingest.errors import NeuralIngestError

_STEP = re.compile(
    r"""\.(?P<name>[A-Za-z_][\w\-]*)      # .name
      | \.\*(?P<dotstar>)                  # .*
      | \[\s*\*\s*\](?P<star>)             # [*]
      | \[\s*(?P<index>-?\d+)\s*\]         # [3]
      | \[\s*'(?P<q1>[^']*)'\s*\]          # ['name']
      | \[\s*"(?P<q2>[^"]*)"\s*\]          # ["name"]
    """,
    re.VERBOSE,
)

WILDCARD = object()


class PathError(NeuralIngestError, ValueError):
    pass


def parse_path(path: str) -> list[Any]:
    """``$.data[*].embedding`` -> ["data", WILDCARD, "embedding"]; raises PathError on bad syntax."""
    p = path.strip()
    if not p.startswith("$"):
        raise PathError(f"response path {path!r} must start with $ (e.g. $.data[*].embedding)")
    steps: list[Any] = []
    pos = 1
    while pos < len(p):
        m = _STEP.match(p, pos)
        if not m:
            raise PathError(f"response path {path!r}: cannot parse at {p[pos:]!r}")
        if m.group("name") is not None:
            steps.append(m.group("name"))
        elif m.group("dotstar") is not None or m.group("star") is not None:
            steps.append(WILDCARD)
        elif m.group("index") is not None:
            steps.append(int(m.group("index")))
        else:
            steps.append(m.group("q1") if m.group("q1") is not None else m.group("q2"))
        pos = m.end()
    return steps


def has_wildcard(path: str) -> bool:
    return any(s is WILDCARD for s in parse_path(path))


def evaluate(path: str, doc: Any) -> Any:
    """Apply ``path`` to ``doc``. With a wildcard the result is the list of matches (flattened across
    wildcards); without, the single value. Missing keys raise PathError naming the step."""
    steps = parse_path(path)
    nodes = [doc]
    wild = False
    where = "$"
    for step in steps:
        nxt: list[Any] = []
        for node in nodes:
            if step is WILDCARD:
                if isinstance(node, list):
                    nxt.extend(node)
                elif isinstance(node, dict):
                    nxt.extend(node.values())
                else:
                    raise PathError(f"{where}[*]: expected a list or object, got {type(node).__name__}")
            elif isinstance(step, int):
                if not isinstance(node, list):
                    raise PathError(f"{where}[{step}]: expected a list, got {type(node).__name__}")
                try:
                    nxt.append(node[step])
                except IndexError:
                    raise PathError(f"{where}[{step}]: index out of range (length {len(node)})") from None
            else:
                if not isinstance(node, dict):
                    raise PathError(f"{where}.{step}: expected an object, got {type(node).__name__}")
                if step not in node:
                    keys = ", ".join(sorted(map(str, node))[:10])
                    raise PathError(f"{where}.{step}: no such key (keys: {keys or 'none'})")
                nxt.append(node[step])
        wild = wild or step is WILDCARD
        where += "[*]" if step is WILDCARD else (f"[{step}]" if isinstance(step, int) else f".{step}")
        nodes = nxt
    return nodes if wild else nodes[0]
