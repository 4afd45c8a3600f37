"""DeadLetter.to_json never fails: whatever a record holds, its dead letter is one line of strict JSON that
json.loads reads back (a lone surrogate or a surrogateescape'd byte comes back exactly)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math

import numpy as np
from hostile import ANY_TEXT, JSON_VALUES, PY_VALUES, strict_json_loads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neural_ingest.records import DeadLetter, Document

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Hostile:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def line(record, message: str = "m") -> dict:
    text = DeadLetter("read", "r", message, record, doc_id="id").to_json("run")
    assert len(text.splitlines()) == 1  # one line by any reader's idea of a line break (U+2028, U+0085...)
    text.encode("utf-8")  # WriteToText encodes strictly: this raised on lone surrogates
    return strict_json_loads(text)


def test_csv_row_with_invalid_utf8_round_trips():
    row = "bad \xff\xfe bytes".encode("latin-1").decode("utf-8", errors="surrogateescape")
    got = line({"file": "/x.csv", "line": 3, "row": ["2", row]})
    assert got["record"]["row"][1] == row  # \udcff escapes: the bytes are recoverable with surrogateescape
    assert got["record"]["row"][1].encode("utf-8", errors="surrogateescape") == b"bad \xff\xfe bytes"


def test_anything_is_written():
    cycle: list = [1]
    cycle.append(cycle)
    d: dict = {}
    d["self"] = d
    deep: list = []
    cur = deep
    for _ in range(500):
        cur.append([])
        cur = cur[0]
    record = {
        "bytes": b"\xff",
        "ba": bytearray(b"a"),
        "set": {3, 1},
        "np": np.arange(3),
        "npf": np.float32(1.5),
        "when": dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc),
        "dec": decimal.Decimal("1.5"),
        "nan": float("nan"),
        "inf": float("-inf"),
        "obj": Hostile(),
        "cycle": cycle,
        "d": d,
        "deep": deep,
        "big": 10**5000,
        (1, 2): "tuple key",
        "doc": Document("i", "t\udc80", {"m": b"x"}),
    }
    got = line(record, message="bad \ud800")
    r = got["record"]
    assert got["message"] == "bad \ud800"
    assert r["bytes"] == "\\xff" and r["set"] == [1, 3] and r["np"] == [0, 1, 2] and r["npf"] == 1.5
    assert r["when"] == "2024-01-02T00:00:00+00:00" and r["dec"] == "1.5" and r["nan"] == "NaN" and r["inf"] == "-Infinity"
    assert r["obj"].startswith("<") and r["cycle"][1] == "<cycle>" and r["d"]["self"] == "<cycle>"
    assert r["big"].startswith("<int of") and r["[1, 2]"] == "tuple key" and r["doc"]["text"] == "t\udc80"


@FAST
@given(st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=5))
def test_a_json_record_comes_back_exactly(record):
    """Any record json.loads can give (lone surrogates, big ints) reads back equal; only NaN / infinity
    become the strings "NaN" / "Infinity" (strict JSON has no such number)."""
    record = json.loads(json.dumps(record))  # as a JSONL source gives it: an escaped surrogate pair is one character
    assert line(record)["record"] == _strict(record)


def _strict(v):
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    if isinstance(v, float) and v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    if isinstance(v, dict):
        return {k: _strict(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_strict(x) for x in v]
    return v


@FAST
@given(PY_VALUES, st.binary(max_size=30))
def test_any_value_is_written(value, raw):
    got = line({"value": value, "raw": raw, "set": frozenset([raw])})
    assert set(got["record"]) == {"value", "raw", "set"}
