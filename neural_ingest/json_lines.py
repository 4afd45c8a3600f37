"""A JSON line parsed by orjson where its answer is known to be json.loads' answer, and no further.

The reader's rules (transforms/read.py) are json.loads' rules: its errors are the dead letters' messages, it
keeps integers of any size, reads ``NaN`` / ``Infinity`` and ``"\\ud800"`` escapes (then dead-lettered by name).
orjson parses a line in about half the time but differs on exactly those: an integer past 64 bits becomes a
float, and NaN, overflowing floats and lone surrogate escapes are errors. So :func:`flat_record` takes orjson's
answer only for a flat object (no nested value: no depth limit can differ) whose floats are all below 2**63 in
magnitude (none can be a rounded big integer; its other floats parse to the same double, property-tested), and
says None otherwise, for the caller to ask json.loads. Strings and keys from orjson are valid UTF-8, as a
strict decode then json.loads gives; anything it refuses (bad bytes, a BOM, trailing data) goes to json.loads.
"""
from __future__ import annotations

from typing import Any

import orjson

_BIG = float(2**63)  # a float at or past this may be an integer literal orjson rounded (json.loads keeps it exact)
_PLAIN = (str, int, bool, type(None))


def flat_record(line: bytes) -> dict[str, Any] | None:
    """``json.loads(line.decode("utf-8"))`` for a flat JSON object (already known valid: no record_problem),
    or None: not known to be, ask json.loads."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict:
        return None
    for v in obj.values():
        t = type(v)
        if t is float:
            if not -_BIG < v < _BIG:
                return None
        elif t not in _PLAIN:
            return None  # a list or object: json.loads decides (its recursion limit, its big integers)
    return obj
