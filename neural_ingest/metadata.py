"""Metadata values in the JSON forms OpenSearch accepts, from whatever a JSON line or a Parquet column holds.

One conversion for every sink (OpenSearch documents, the Parquet sink's metadata column), applied when a
record becomes a Document (transforms/prepare.py), so a value with no JSON form dead-letters only its record,
with a reason naming the field. The forms:

- timestamps: ISO 8601, the unit's precision (``2024-01-02T03:04:05.123456789`` for ns); a timestamp with a
  time zone is the UTC instant with ``Z`` (OpenSearch stores dates in UTC); years outside 1-9999: no form
- dates ``2024-01-02``, times ``03:04:05.5``, durations and intervals ISO 8601 (``P1DT2H3M4.5S``, ``-PT...``)
- decimals: their exact decimal string (``"12.30"``; OpenSearch coerces numeric strings into numeric fields)
- binary: base64 (what OpenSearch's ``binary`` field takes)
- NaN and +/-infinity (float or decimal): null (JSON has no such number; OpenSearch rejects them)
- integers beyond the 64-bit range: their decimal string
- lists, structs (objects), maps (objects; keys as strings; a key given twice has no form), dictionary-encoded
  and large strings/lists: converted element by element
- a string holding a lone surrogate (``"\\ud800"`` in JSON) is not Unicode: no form
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import json
import math
from collections.abc import Callable
from typing import Any

from neural_ingest.errors import NeuralIngestError

INT_MIN, UINT_MAX = -(2**63), 2**64 - 1
_EPOCH = _dt.datetime(1970, 1, 1)
_PER_SECOND = {"s": 1, "ms": 1000, "us": 1_000_000, "ns": 1_000_000_000}
_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}


class MetadataError(NeuralIngestError, ValueError):
    """A value with no JSON form; ``field`` is its dotted path in the record."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"field {field!r}: {problem}")
        self.field = field
        self.problem = problem


def lone_surrogate(s: str) -> bool:
    """True when ``s`` holds a code point UTF-8 cannot encode (a lone surrogate, or a byte kept by surrogateescape)."""
    try:
        s.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


MAX_NESTING = 100  # levels of objects / arrays in one record (OpenSearch's own mapping depth limit is 20)


def record_problem(record: Any) -> tuple[str, str] | None:
    """(reason, message) when no stage could carry ``record``: a lone surrogate (Beam's coders encode strings
    as strict UTF-8) or nesting past MAX_NESTING levels (too deep to pickle); None when it can go on."""
    if type(record) is dict and _flat_and_valid(record):
        return None  # the common JSON line: nothing nested to walk, every string checked in place
    try:
        bad = find_lone_surrogate(record)
    except _TooDeep as e:
        return "too_deeply_nested", f"field {e.path[:100]!r}... is nested more than {MAX_NESTING} levels deep"
    if bad is not None:
        return "invalid_unicode", f"field {bad!r} holds a lone surrogate escape (e.g. \\ud800), which is not Unicode"
    return None


_SCALARS = (int, float, bool, type(None))


def _flat_and_valid(record: dict[Any, Any]) -> bool:
    """True when every key is a valid str and every value a valid str or a plain scalar (no container to
    walk); False means: walk it (find_lone_surrogate). ASCII strings are told valid without encoding them."""
    for k, v in record.items():
        if type(k) is not str or not (k.isascii() or not lone_surrogate(k)):
            return False
        t = type(v)
        if t is str:
            if not (v.isascii() or not lone_surrogate(v)):
                return False
        elif t not in _SCALARS:
            return False
    return True


class _TooDeep(Exception):
    def __init__(self, path: str):
        self.path = path


def find_lone_surrogate(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (value or key) in ``value`` holding a lone surrogate, else None.
    Raises _TooDeep past MAX_NESTING levels."""
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        v, p, depth = stack.pop()
        if depth > MAX_NESTING:
            raise _TooDeep(p)
        if isinstance(v, str):
            if lone_surrogate(v):
                return p or "(value)"
        elif isinstance(v, dict):
            for k, x in v.items():
                key = str(k)
                if lone_surrogate(key):
                    return f"{p}.{key}" if p else key
                stack.append((x, f"{p}.{key}" if p else key, depth + 1))
        elif isinstance(v, (list, tuple)):
            stack.extend((x, f"{p}[{i}]", depth + 1) for i, x in enumerate(v))
    return None


# --------------------------------------------------------------------------- ISO 8601
def _fraction(frac: int, unit: str) -> str:
    return f".{frac:0{_DIGITS[unit]}d}" if _DIGITS[unit] else ""


def iso_timestamp(value: int, unit: str, utc: bool) -> str:
    """``value`` units since the epoch; ``utc``: the value is an instant (Arrow timestamp with a time zone)."""
    secs, frac = divmod(value, _PER_SECOND[unit])
    try:
        when = _EPOCH + _dt.timedelta(seconds=secs)
    except OverflowError:
        raise ValueError(f"timestamp {value} {unit} is outside years 1-9999") from None
    return when.isoformat() + _fraction(frac, unit) + ("Z" if utc else "")


def iso_date(days: int) -> str:
    try:
        return (_EPOCH.date() + _dt.timedelta(days=days)).isoformat()
    except OverflowError:
        raise ValueError(f"date {days} days from 1970-01-01 is outside years 1-9999") from None


def iso_time(value: int, unit: str) -> str:
    secs, frac = divmod(value, _PER_SECOND[unit])
    if not 0 <= secs < 86400:
        raise ValueError(f"time of day {value} {unit} is not within one day")
    return f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}" + _fraction(frac, unit)


def iso_duration(value: int, unit: str) -> str:
    sign = "-" if value < 0 else ""
    secs, frac = divmod(abs(value), _PER_SECOND[unit])
    days, secs = divmod(secs, 86400)
    return f"{sign}P{days}DT{secs // 3600}H{secs // 60 % 60}M{secs % 60}{_fraction(frac, unit)}S"


def _iso_datetime(value: _dt.datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        return value.isoformat()
    try:
        return value.astimezone(_dt.timezone.utc).replace(tzinfo=None).isoformat() + "Z"
    except OverflowError:  # 0001-01-01T00:00+14:00 has no UTC form in years 1-9999: keep its own offset
        return value.isoformat()


def _timedelta_iso(value: _dt.timedelta) -> str:
    return iso_duration((value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds, "us")


# --------------------------------------------------------------------------- Python values
def _json_ready_flat(value: dict[Any, Any]) -> bool:
    """True when json_value would give back a copy of ``value`` as it is: flat and valid Unicode (_flat_and_valid),
    its ints in range and its floats finite. What a record's metadata usually is, decided in one pass instead of a
    recursive call a value."""
    return _flat_and_valid(value) and all(
        INT_MIN <= v <= UINT_MAX if type(v) is int else math.isfinite(v) if type(v) is float else True
        for v in value.values()
    )


def json_value(value: Any, field: str = "") -> Any:
    """``value`` as JSON OpenSearch accepts (see the module docstring); MetadataError names the field otherwise."""
    if type(value) is dict and _json_ready_flat(value):
        return dict(value)  # the common flat record: what the walk below would build, in one pass
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if lone_surrogate(value):
            raise MetadataError(field, "holds a lone surrogate (e.g. a \\ud800 escape), which is not Unicode")
        return value
    if isinstance(value, int):
        return value if INT_MIN <= value <= UINT_MAX else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = json_value(k if isinstance(k, str) else _key(k, field), field)
            out[key] = json_value(v, f"{field}.{key}" if field else str(key))
        return out
    convert = _converter(value)
    if convert is None and isinstance(value, (list, tuple, set, frozenset)):
        return [json_value(v, f"{field}[{i}]") for i, v in enumerate(value)]
    if convert is None:
        raise MetadataError(field, f"a {type(value).__module__}.{type(value).__qualname__} has no JSON form")
    try:
        return json_value(convert(value), field)
    except MetadataError:
        raise
    except (ValueError, OverflowError, TypeError) as e:
        raise MetadataError(field, str(e)) from None


def _key(key: Any, field: str) -> str:
    out = json_value(key, field)
    return out if isinstance(out, str) else json.dumps(out, ensure_ascii=False)


def _converter(value: Any) -> Callable[[Any], Any] | None:
    if isinstance(value, _dt.datetime):  # before date: a datetime is a date
        return _iso_datetime
    if isinstance(value, (_dt.date, _dt.time)):
        return lambda v: v.isoformat()
    if isinstance(value, _dt.timedelta):
        return _timedelta_iso
    if isinstance(value, decimal.Decimal):
        return lambda v: str(v) if v.is_finite() else None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return lambda v: base64.b64encode(bytes(v)).decode("ascii")
    module = type(value).__module__
    if module == "numpy":  # numpy scalars and arrays
        import numpy as np

        if isinstance(value, np.datetime64):
            return lambda v: None if np.isnat(v) else str(np.datetime_as_string(v))
        if isinstance(value, np.timedelta64):
            return lambda v: None if np.isnat(v) else iso_duration(int(v.astype("timedelta64[ns]").astype(np.int64)), "ns")
        return lambda v: v.tolist()
    if type(value).__name__ == "MonthDayNano":  # pyarrow's month_day_nano interval (a tuple)
        return _interval_iso
    return None


def _interval_iso(v: Any) -> str:
    sign = "-" if v.nanoseconds < 0 else ""
    secs, frac = divmod(abs(v.nanoseconds), 1_000_000_000)
    return f"P{v.months}M{v.days}DT{sign}{secs}{_fraction(frac, 'ns')}S"


_STRICT_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False)  # json.dumps with these builds one a call


def metadata_json(metadata: dict[str, Any]) -> str:
    """The metadata as strict JSON text (the Parquet sink's metadata column)."""
    if type(metadata) is dict and _json_ready_flat(metadata):
        return _STRICT_JSON.encode(metadata)  # json_value would copy it as it is
    return _STRICT_JSON.encode(json_value(metadata))


# --------------------------------------------------------------------------- Arrow columns
def arrow_values(arr: Any) -> tuple[list[Any], dict[int, str]]:
    """An Arrow array's values as JSON-ready Python values, and ``{row: problem}`` for rows with no form.

    Beam's own row conversion (``Table.to_pydict``) fails the whole file on a nanosecond timestamp or a
    year past 9999; this one converts temporal types from their integers and isolates what fails to its row.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], arr.type)
    t = arr.type
    if isinstance(t, pa.ExtensionType):
        return arrow_values(arr.storage)
    if pa.types.is_dictionary(t):
        return arrow_values(arr.dictionary_decode())
    if pa.types.is_timestamp(t):
        return _each(arr.cast(pa.int64()).to_pylist(), lambda v: iso_timestamp(v, t.unit, bool(t.tz)))
    if pa.types.is_date32(t):
        return _each(arr.cast(pa.int32()).to_pylist(), iso_date)
    if pa.types.is_date64(t):
        return _each(arr.cast(pa.int64()).to_pylist(), lambda v: iso_date(v // 86_400_000))
    if pa.types.is_time32(t) or pa.types.is_time64(t):
        ints = arr.cast(pa.int32() if pa.types.is_time32(t) else pa.int64()).to_pylist()
        return _each(ints, lambda v: iso_time(v, t.unit))
    if pa.types.is_duration(t):
        return _each(arr.cast(pa.int64()).to_pylist(), lambda v: iso_duration(v, t.unit))
    if pa.types.is_map(t):
        entries = pa.struct([pa.field("key", t.key_type, nullable=False), pa.field("value", t.item_type)])
        return _lists(arr.cast(pa.list_(entries)), pc, as_map=True)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or _is_list_view(pa, t):
        return _lists(arr, pc, as_map=False)
    if pa.types.is_struct(t):
        return _structs(arr)
    try:
        return _each(arr.to_pylist(), lambda v: v)
    except Exception:  # noqa: BLE001 - e.g. a union of temporal types: value by value, each failure to its row
        return _each(list(range(len(arr))), lambda i: json_value(arr[i].as_py()))


def _is_list_view(pa: Any, t: Any) -> bool:
    return any(getattr(pa.types, f"is_{n}", lambda _t: False)(t) for n in ("list_view", "large_list_view"))


def _each(values: list[Any], convert: Callable[[Any], Any]) -> tuple[list[Any], dict[int, str]]:
    out: list[Any] = []
    bad: dict[int, str] = {}
    for i, v in enumerate(values):
        try:
            out.append(None if v is None else convert(v))
        except (ValueError, OverflowError, TypeError) as e:
            out.append(None)
            bad[i] = str(e)
    return out, bad


def _lists(arr: Any, pc: Any, as_map: bool) -> tuple[list[Any], dict[int, str]]:
    flat = arr.flatten()
    lengths = pc.list_value_length(arr).to_pylist()
    if as_map:
        key_arr, val_arr = flat.flatten()
        keys, key_bad = arrow_values(key_arr)
        vals, val_bad = arrow_values(val_arr)
        child_bad = {**val_bad, **key_bad}
    else:
        vals, child_bad = arrow_values(flat)
    out: list[Any] = []
    bad: dict[int, str] = {}
    pos = 0
    for row, n in enumerate(lengths):
        if n is None:
            out.append(None)
            continue
        problems = [child_bad[j] for j in range(pos, pos + n) if j in child_bad]
        if problems:
            bad[row] = problems[0]
        if as_map:
            obj: dict[str, Any] = {}
            for j in range(pos, pos + n):
                try:
                    key = _key(keys[j], "key")
                except (ValueError, RecursionError) as e:
                    bad.setdefault(row, f"map key: {e}")
                    continue
                if key in obj:
                    bad.setdefault(row, f"map key {key!r} appears twice")
                obj[key] = vals[j]
            out.append(obj)
        else:
            out.append(vals[pos : pos + n])
        pos += n
    return out, bad


def _structs(arr: Any) -> tuple[list[Any], dict[int, str]]:
    names = [arr.type.field(i).name for i in range(arr.type.num_fields)]
    children = [arrow_values(c) for c in arr.flatten()]
    valid = arr.is_valid().to_pylist()
    out: list[Any] = []
    bad: dict[int, str] = {}
    for row, ok in enumerate(valid):
        if not ok:
            out.append(None)
            continue
        out.append({name: vals[row] for name, (vals, _b) in zip(names, children)})
        for name, (_v, child_bad) in zip(names, children):
            if row in child_bad:
                bad.setdefault(row, f"{name}: {child_bad[row]}")
    return out, bad
