"""The JSONL reader's orjson fast path gives exactly json.loads' outcome: the same record (same keys in the same
order, same values of the same types) or the same dead letter, for any line."""
from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from neural_ingest.json_lines import flat_record
from neural_ingest.transforms.read import ParseJsonLine


def strict(value: Any) -> Any:
    """A value with its types spelled out: 1, 1.0 and True differ, -0.0 and 0.0 differ, NaN equals NaN."""
    if isinstance(value, dict):
        return ("dict", [(k, strict(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [strict(v) for v in value])
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else value.hex())
    return (type(value).__name__, value)


def outcome(fn: ParseJsonLine, line: bytes) -> Any:
    out = fn._parse("f.jsonl", 0, line)
    if isinstance(out, dict):
        return strict(out)
    if out is None:
        return None
    return (out.tag, out.value.error_type, out.value.message)


FAST = ParseJsonLine()
SLOW = ParseJsonLine()
SLOW._utf8 = False  # the reader as it was: decode, json.loads, record_problem

scalars = (
    st.none() | st.booleans() | st.floats() | st.text(st.characters(codec=None), max_size=20)
    | st.integers() | st.integers(min_value=2**62, max_value=2**70) | st.integers(min_value=-(2**70), max_value=-(2**62))
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8
)
numbers = st.from_regex(r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?", fullmatch=True)


@st.composite
def lines(draw: Any) -> bytes:
    record = draw(st.dictionaries(st.sampled_from(["id", "text", "topic", "n", "x"]), values, max_size=5))
    text = json.dumps(record, ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):  # a number literal as written by hand (long mantissas, exponents)
        text = text[:-1] + (", " if record else "") + f'"num": {draw(numbers)}' + "}"
    if draw(st.booleans()):  # a key given twice: json.loads keeps its first place and its last value
        text = text[:-1] + (", " if text != "{}" else "") + '"id": ' + json.dumps(draw(scalars)) + "}"
    raw = text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes bytes no strict decoder takes
    cut = draw(st.integers(min_value=0, max_value=len(raw)))
    return raw if draw(st.integers(0, 9)) else raw[:cut] + draw(st.binary(max_size=3))


@settings(max_examples=1500, deadline=None)
@given(lines())
def test_the_fast_path_gives_json_loads_outcome(line):
    assert outcome(FAST, line) == outcome(SLOW, line)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
def test_any_bytes_get_json_loads_outcome(line):
    assert outcome(FAST, line) == outcome(SLOW, line)


def test_what_orjson_reads_differently_goes_to_json_loads():
    assert flat_record(b'{"id": 123456789012345678901234567890}') is None  # orjson: a float; json.loads: the integer
    assert flat_record(b'{"id": -9223372036854775809}') is None
    assert flat_record(b'{"x": NaN}') is None and flat_record(b'{"x": 1e400}') is None
    assert flat_record(b'{"x": "\\ud800"}') is None  # a lone surrogate escape: json.loads reads it, then a dead letter
    assert flat_record(b'{"x": [1]}') is None and flat_record(b'{"x": {}}') is None  # nested: json.loads decides
    assert flat_record(b'[1]') is None and flat_record(b'\xef\xbb\xbf{"x": 1}') is None
    assert flat_record(b'{"id": "a", "n": 18446744073709551615, "f": 0.1}') == {"id": "a", "n": 2**64 - 1, "f": 0.1}
    fast = ParseJsonLine()
    out = fast._parse("f", 7, b'{"id": 123456789012345678901234567890, "text": "t"}')
    assert out["id"] == 123456789012345678901234567890 and type(out["id"]) is int
