"""Hypothesis strategies for hostile input: any Unicode (lone surrogates included), any bytes, any JSON value,
the Python values a Parquet column turns into, and Arrow arrays of every type the Parquet reader meets."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from hypothesis import strategies as st

# st.characters() never draws a surrogate; a JSON "\ud800" escape or a surrogateescape'd byte is one.
SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
ANY_CHAR = st.one_of(st.characters(), SURROGATE)
ANY_TEXT = st.text(ANY_CHAR, max_size=40)
# Valid Unicode only: hypothesis also injects string constants it finds in the code (e.g. "\udcff"), so strip any.
UNICODE_TEXT = st.text(st.characters(), max_size=40).map(lambda s: s.encode("utf-8", "replace").decode("utf-8"))

INTS = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([0, -(2**63), 2**63 - 1, 2**64, -(2**64) - 1, 10**40]))
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), INTS, FLOATS, ANY_TEXT)
# What json.loads can return: strings with lone surrogates (from escapes), NaN / Infinity, big integers.
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(ANY_TEXT, inner, max_size=4)),
    max_leaves=12,
)

TZ = st.sampled_from(
    [None, dt.timezone.utc, dt.timezone(dt.timedelta(hours=-5, minutes=-30)), dt.timezone(dt.timedelta(hours=14))]
)
PY_SCALARS = st.one_of(
    JSON_SCALARS,
    st.binary(max_size=20),
    st.datetimes(timezones=TZ),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.decimals(allow_nan=True, allow_infinity=True, places=None),
)
PY_VALUES = st.recursive(
    PY_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner), st.dictionaries(ANY_TEXT, inner, max_size=4)),
    max_leaves=12,
)


def has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(has_surrogate(k) or has_surrogate(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(has_surrogate(v) for v in value)
    return False


def strict_json_loads(line: str) -> Any:
    """json.loads that refuses NaN / Infinity (not JSON; OpenSearch and jq reject them)."""
    import json

    def refuse(c: str) -> Any:
        raise ValueError(f"{c} is not JSON")

    return json.loads(line, parse_constant=refuse)


# --------------------------------------------------------------------------- Arrow
def arrow_types() -> st.SearchStrategy[Any]:
    import pyarrow as pa

    units = st.sampled_from(["s", "ms", "us", "ns"])
    leaves = st.one_of(
        st.builds(pa.timestamp, units, st.sampled_from([None, "UTC", "+05:30", "America/New_York"])),
        st.just(pa.date32()),
        st.just(pa.date64()),
        st.builds(pa.time32, st.sampled_from(["s", "ms"])),
        st.builds(pa.time64, st.sampled_from(["us", "ns"])),
        st.builds(pa.duration, units),
        st.builds(pa.decimal128, st.integers(1, 38), st.integers(0, 10)).filter(lambda t: t.scale <= t.precision),
        st.sampled_from(
            [
                pa.binary(),
                pa.large_binary(),
                pa.binary(3),
                pa.string(),
                pa.large_string(),
                pa.float64(),
                pa.float32(),
                pa.float16(),
                pa.int64(),
                pa.uint64(),
                pa.int8(),
                pa.bool_(),
                pa.null(),
                pa.month_day_nano_interval(),
            ]
        ),
        st.just("dictionary"),
    )

    def nest(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        ok = inner.filter(lambda t: t != "dictionary")
        return st.one_of(
            st.builds(pa.list_, ok),
            st.builds(pa.large_list, ok),
            st.builds(lambda t: pa.list_(t, 2), ok),
            st.builds(lambda a, b: pa.struct([("a", a), ("b", b)]), ok, ok),
            st.builds(lambda v: pa.map_(pa.string(), v), ok),
        )

    return st.recursive(leaves, nest, max_leaves=4)


@st.composite
def arrow_arrays(draw: Any, size: int | None = None) -> Any:
    """An Arrow array of a drawn type with drawn values (raw integers for temporal types: any int64)."""
    n = size if size is not None else draw(st.integers(0, 5))
    t = draw(arrow_types())
    return _array(draw, t, n)


def _array(draw: Any, t: Any, n: int) -> Any:
    import pyarrow as pa

    if t == "dictionary":
        return pa.array(
            draw(st.lists(st.one_of(st.none(), UNICODE_TEXT), min_size=n, max_size=n)), pa.string()
        ).dictionary_encode()
    if pa.types.is_timestamp(t) or pa.types.is_duration(t) or pa.types.is_date64(t):
        ints = draw(st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), min_size=n, max_size=n))
        return pa.array(ints, pa.int64()).view(t)
    if pa.types.is_date32(t):
        return pa.array(
            draw(st.lists(st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)), min_size=n, max_size=n)), pa.int32()
        ).view(t)
    if pa.types.is_time32(t) or pa.types.is_time64(t):
        per = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[t.unit]
        ints = draw(st.lists(st.one_of(st.none(), st.integers(0, 86400 * per - 1)), min_size=n, max_size=n))
        return pa.array(ints, pa.int32() if pa.types.is_time32(t) else pa.int64()).view(t)
    if pa.types.is_decimal(t):
        limit = 10 ** (t.precision - t.scale) - 1
        vals = draw(
            st.lists(st.one_of(st.none(), st.decimals(-limit, limit, places=t.scale, allow_nan=False)), min_size=n, max_size=n)
        )
        return pa.array(vals, t)
    if pa.types.is_fixed_size_binary(t):
        return pa.array(
            draw(st.lists(st.one_of(st.none(), st.binary(min_size=t.byte_width, max_size=t.byte_width)), min_size=n, max_size=n)),
            t,
        )
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pa.array(draw(st.lists(st.one_of(st.none(), st.binary(max_size=10)), min_size=n, max_size=n)), t)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pa.array(draw(st.lists(st.one_of(st.none(), UNICODE_TEXT), min_size=n, max_size=n)), t)
    if pa.types.is_floating(t):
        vals = draw(
            st.lists(
                st.one_of(st.none(), st.floats(width=16 if t == pa.float16() else 32 if t == pa.float32() else 64)),
                min_size=n,
                max_size=n,
            )
        )
        if t == pa.float16():
            import numpy as np

            return pa.array(np.array([math.nan if v is None else v for v in vals], dtype=np.float16), t)
        return pa.array(vals, t)
    if pa.types.is_integer(t):
        info = {pa.int64(): (-(2**63), 2**63 - 1), pa.uint64(): (0, 2**64 - 1), pa.int8(): (-128, 127)}[t]
        return pa.array(draw(st.lists(st.one_of(st.none(), st.integers(*info)), min_size=n, max_size=n)), t)
    if pa.types.is_boolean(t):
        return pa.array(draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=n, max_size=n)), t)
    if pa.types.is_null(t):
        return pa.nulls(n)
    if pa.types.is_interval(t):
        i32 = st.integers(-(2**31), 2**31 - 1)
        vals = draw(
            st.lists(
                st.one_of(
                    st.none(), st.builds(lambda m, d, ns: pa.MonthDayNano([m, d, ns]), i32, i32, st.integers(-(2**63), 2**63 - 1))
                ),
                min_size=n,
                max_size=n,
            )
        )
        return pa.array(vals, t)
    if pa.types.is_map(t):
        lengths = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
        keys = pa.array(draw(st.lists(UNICODE_TEXT, min_size=sum(lengths), max_size=sum(lengths))), pa.string())
        items = _array(draw, t.item_type, sum(lengths))
        offsets = pa.array([sum(lengths[:i]) for i in range(n + 1)], pa.int32())
        return pa.MapArray.from_arrays(offsets, keys, items)
    if pa.types.is_fixed_size_list(t):
        values = _array(draw, t.value_type, n * t.list_size)
        return pa.FixedSizeListArray.from_arrays(values, t.list_size)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        lengths = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
        values = _array(draw, t.value_type, sum(lengths))
        offsets = [sum(lengths[:i]) for i in range(n + 1)]
        cls = pa.ListArray if pa.types.is_list(t) else pa.LargeListArray
        return cls.from_arrays(pa.array(offsets, pa.int32() if pa.types.is_list(t) else pa.int64()), values)
    if pa.types.is_struct(t):
        children = [_array(draw, t.field(i).type, n) for i in range(t.num_fields)]
        nulls = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        if "fixed_size_list" in str(t):  # pyarrow writes a null struct over a fixed-size list as a Parquet file
            nulls = [False] * n  # it cannot read back ("Expected all lists to be of size=2"): a file, not a record
        mask = pa.array(nulls, pa.bool_())
        return pa.StructArray.from_arrays(children, fields=[t.field(i) for i in range(t.num_fields)], mask=mask)
    raise AssertionError(f"no strategy for {t}")
