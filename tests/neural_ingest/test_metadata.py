"""neural_ingest.metadata: every value a JSON line or a Parquet column holds gets the JSON form OpenSearch
accepts, or a MetadataError naming the field; never another exception."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math

import numpy as np
import pyarrow as pa
import pytest
from hostile import ANY_TEXT, JSON_SCALARS, JSON_VALUES, PY_VALUES, arrow_arrays, has_surrogate, strict_json_loads
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from neural_ingest.metadata import MetadataError, arrow_values, find_lone_surrogate, json_value, metadata_json, record_problem

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(
    "value, want",
    [
        (dt.datetime(2024, 1, 2, 3, 4, 5, 600), "2024-01-02T03:04:05.000600"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))), "2024-01-02T01:04:05Z"),
        (dt.date(2024, 2, 29), "2024-02-29"),
        (dt.time(3, 4, 5, 500000), "03:04:05.500000"),
        (dt.timedelta(days=1, hours=2, minutes=3, seconds=4, microseconds=500000), "P1DT2H3M4.500000S"),
        (-dt.timedelta(seconds=1), "-P0DT0H0M1.000000S"),
        (decimal.Decimal("12.30"), "12.30"),
        (decimal.Decimal("NaN"), None),
        (b"\xff\x00binary", "/wBiaW5hcnk="),
        (math.nan, None),
        (-math.inf, None),
        (2**64, "18446744073709551616"),
        (2**64 - 1, 2**64 - 1),
        (np.int32(7), 7),
        (np.float32(0.5), 0.5),
        (np.array([1, 2]), [1, 2]),
        (np.datetime64("2024-01-02T03:04:05.123456789"), "2024-01-02T03:04:05.123456789"),
        (np.datetime64("NaT"), None),
        (np.timedelta64(1500, "ms"), "P0DT0H0M1.500000000S"),
        ({"a": (1, {2, 3}), 5: "x"}, {"a": [1, [2, 3]], "5": "x"}),
        (pa.MonthDayNano([1, 2, 3]), "P1M2DT0.000000003S"),
    ],
)
def test_json_forms(value, want):
    assert json_value(value) == want


def test_a_lone_surrogate_or_an_object_names_the_field():
    with pytest.raises(MetadataError, match=r"field 'tags\[1\]'.*lone surrogate"):
        json_value({"tags": ["ok", "bad \ud800"]})
    with pytest.raises(MetadataError, match=r"field 'x'.*object.*no JSON form"):
        json_value({"x": object()})


@FAST
@given(PY_VALUES)
def test_json_value_is_total_strict_and_idempotent(value):
    """Any value: strict JSON (no NaN, UTF-8 encodable) that converts to itself, or a MetadataError for a
    lone surrogate; never another exception."""
    record = {"field": value}
    if has_surrogate(value):
        with pytest.raises(MetadataError, match="field 'field"):
            json_value(record)
        return
    out = json_value(record)
    text = metadata_json(record)
    text.encode("utf-8")
    assert strict_json_loads(text) == out
    assert json_value(out) == out


@pytest.mark.parametrize(
    "arr, want, bad",
    [
        (pa.array([1_000_000_001, None], pa.timestamp("ns")), ["1970-01-01T00:00:01.000000001", None], {}),
        (pa.array([1_500], pa.timestamp("ms", tz="Europe/Paris")), ["1970-01-01T00:00:01.500Z"], {}),
        (pa.array([253402300800, 0], pa.timestamp("s")), [None, "1970-01-01T00:00:00"], {0: "outside years 1-9999"}),
        (pa.array([-1], pa.date32()), ["1969-12-31"], {}),
        (pa.array([3 * 86_400_000], pa.date64()), ["1970-01-04"], {}),
        (pa.array([3_723_000_000_001], pa.time64("ns")), ["01:02:03.000000001"], {}),
        (pa.array([-90_061_000_001], pa.duration("us")), ["-P1DT1H1M1.000001S"], {}),
        (pa.array([decimal.Decimal("1.20")], pa.decimal128(5, 2)), [decimal.Decimal("1.20")], {}),
        (pa.array(["x", None, "x"]).dictionary_encode(), ["x", None, "x"], {}),
        (pa.array(["x"], pa.large_string()), ["x"], {}),
        (
            pa.array([[("a", 1)], None, [("a", 1), ("a", 2)]], pa.map_(pa.string(), pa.int8())),
            [{"a": 1}, None, {"a": 2}],
            {2: "appears twice"},
        ),
        (pa.array([[1, None], None], pa.large_list(pa.timestamp("ns"))), [["1970-01-01T00:00:00.000000001", None], None], {}),
        (
            pa.array([{"t": 5}, None], pa.struct([("t", pa.timestamp("ns", "UTC"))])),
            [{"t": "1970-01-01T00:00:00.000000005Z"}, None],
            {},
        ),
        (
            pa.array([[1], [2, 3], [4]], pa.list_(pa.timestamp("s"))).slice(1, 2),
            [["1970-01-01T00:00:02", "1970-01-01T00:00:03"], ["1970-01-01T00:00:04"]],
            {},
        ),
    ],
)
def test_arrow_columns(arr, want, bad):
    vals, problems = arrow_values(arr)
    assert vals == want
    assert set(problems) == set(bad)
    for row, words in bad.items():
        assert words in problems[row]


@FAST
@given(st.sampled_from(["s", "ms", "us", "ns"]), st.integers(-(2**63) + 1, 2**63 - 1), st.booleans())  # -2**63: numpy NaT
def test_timestamps_are_numpys_iso_8601_at_any_unit_and_value(unit, value, tz):
    """Arrow stores a timestamp as an int64 of its unit: every one is ISO 8601 at that precision (numpy's
    rendering), or no form outside years 1-9999; Beam's to_pydict failed the whole file on either."""
    vals, bad = arrow_values(pa.array([value], pa.int64()).view(pa.timestamp(unit, "UTC" if tz else None)))
    ref = str(np.datetime_as_string(np.datetime64(value, unit)))
    year = ref.lstrip("-+").split("-")[0]
    if ref.startswith("-") or len(year) != 4 or year == "0000":
        assert 0 in bad and vals == [None]
    else:
        assert bad == {} and vals == [ref + ("Z" if tz else "")]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrow_arrays())
def test_arrow_values_are_total_and_json_ready(arr):
    """Any Arrow type (nested, dictionary, temporal at any value): one value per row, each row either JSON
    OpenSearch accepts or named as having no form; never an exception for the whole column."""
    vals, bad = arrow_values(arr)
    assert len(vals) == len(arr)
    for row, value in enumerate(vals):
        if row in bad:
            assert isinstance(bad[row], str) and bad[row]
            continue
        strict_json_loads(json.dumps(json_value(value), allow_nan=False))


@FAST
@given(st.dictionaries(ANY_TEXT, st.one_of(JSON_SCALARS, JSON_VALUES), max_size=6))
def test_record_problem_flat_fast_path_agrees_with_the_walk(record):
    """A flat record is answered without the walk (record_problem's fast path): the same answer, and a
    lone surrogate in any key or value is still caught, named as the walk names it."""
    bad = find_lone_surrogate(record)
    problem = record_problem(record)
    assert (problem is None) == (bad is None) == (not has_surrogate(record))
    if problem is not None:
        assert problem[0] == "invalid_unicode" and repr(bad) in problem[1]


@FAST
@given(st.dictionaries(st.one_of(ANY_TEXT, st.integers(), st.booleans()),
                       st.one_of(JSON_SCALARS, PY_VALUES, st.integers(-(2**70), 2**70), st.floats()), max_size=6))
@example({"a": math.nan, "b": 1})
@example({"a": 2**64, "b": -(2**63) - 1})
@example({"a": "\ud800"})
@example({"\udc80": 1})
@example({1: "x", 2.5: None})
@example({"a": dt.date(2024, 1, 2)})
def test_a_flat_dict_is_answered_in_one_pass_as_the_walk_answers_it(value):
    """json_value's flat fast path gives what the recursive walk gives (the same dict, or the same error)."""
    from neural_ingest import metadata

    def walk(v):
        real = metadata._json_ready_flat
        metadata._json_ready_flat = lambda _: False
        try:
            return ("ok", json_value(v))
        except MetadataError as e:
            return ("error", str(e))
        finally:
            metadata._json_ready_flat = real

    try:
        fast = ("ok", json_value(value))
    except MetadataError as e:
        fast = ("error", str(e))
    assert repr(fast) == repr(walk(value))
    if fast[0] == "ok":
        assert fast[1] is not value  # a new dict, as the walk builds
