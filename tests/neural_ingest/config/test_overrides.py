"""--set (neural_ingest/config/loading.py apply_overrides): every problem is one line naming the key,
no value is ever echoed, secret fields are taken verbatim."""
from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neural_ingest.config import ConfigError, apply_overrides, parse_config
from neural_ingest.config.loading import SECRET_FIELDS, SECRET_MAPS

BASE: dict[str, Any] = {
    "source": {"type": "jsonl", "path": "docs.jsonl", "text_fields": ["title", "body"]},
    "encoder": {"type": "sentence_transformers", "model": "all-MiniLM-L6-v2"},
    "sink": {"type": "opensearch", "index": "docs", "hosts": ["http://127.0.0.1:9200"], "username": "admin",
             "bulk": {"max_docs": 500}},
}
MARK = "Zx7§SECRET§"  # never appears in a message unless a value was echoed


def overrides(*items: str) -> dict[str, Any]:
    return apply_overrides(copy.deepcopy(BASE), list(items))


@pytest.mark.parametrize("item, expect", [
    ("encoders.3.x=1", "--set encoders.3.x: encoders has 1 item, so 3 is out of range (use 0..0)"),
    ("encoders.x.y=1", "--set encoders.x.y: encoders is a list, so 'x' is not an item of it (use 0..0)"),
    ("source.text_fields.x=1", "--set source.text_fields.x: source.text_fields is a list, so 'x' is not an item of it"),
    ("source.text_fields.5=t", "--set source.text_fields.5: source.text_fields has 2 items, so 5 is out of range"),
    ("source.text_fields.-1=t", "--set source.text_fields.-1: source.text_fields is a list"),
    ("sink.index.x=1", "--set sink.index.x: sink.index is a text value, not a section: set sink.index itself"),
    ("sink.bulk.max_docs.x=1", "--set sink.bulk.max_docs.x: sink.bulk.max_docs is a number, not a section"),
    ("sink..x=1", "--set sink..x: the key path has an empty part"),
    ("=1", "--set (an argument): expected key.path=value"),
    ("sink.bulk.max_docs=[1", "--set sink.bulk.max_docs: the value is not valid YAML"),
    ("sink.password:hunter2", "--set sink.password: expected key.path=value"),
])
def test_each_problem_is_one_line_naming_the_key(item, expect):
    with pytest.raises(ConfigError) as e:
        overrides(item)
    msg = str(e.value)
    assert msg.startswith(expect), msg
    assert "\n" not in msg and "hunter2" not in msg


def test_the_secret_fields_come_from_the_config_types():
    assert {"password", "api_key"} <= SECRET_FIELDS and {"headers", "credential"} <= SECRET_MAPS


@pytest.mark.parametrize("value", ["[abc", "{x", "123456", "yes", "null", "a: b", "'q", "#x", "${PW}"])
def test_secret_values_are_taken_verbatim(value):
    """A password is text whatever it looks like: YAML would turn these into lists, numbers, errors..."""
    cfg = parse_config(overrides(f"sink.password={value}", "encoders.0.type=openai", "encoders.0.model=m",
                                 "encoders.0.dimension=3", f"encoders.0.api_key={value}",
                                 f"encoders.0.headers.X-Key={value}"))
    assert cfg.sink.password.get_secret_value() == value
    assert cfg.encoders[0].api_key.get_secret_value() == value
    assert cfg.encoders[0].headers["X-Key"].get_secret_value() == value


def test_good_overrides_still_work():
    cfg = parse_config(overrides("encoders.0.batch_size=64", "sink.knn.engine=faiss", "source.text_fields.1=abstract",
                                 "sink.aws_sigv4.region=eu-west-1"))
    assert cfg.encoders[0].batch_size == 64 and cfg.sink.knn.engine == "faiss"
    assert cfg.source.text_fields == ["title", "abstract"] and cfg.sink.aws_sigv4.region == "eu-west-1"


_segment = st.one_of(
    st.sampled_from(["source", "sink", "encoders", "encoder", "text_fields", "index", "bulk", "max_docs", "password",
                     "api_key", "headers", "knn", "run", "0", "1", "3", "-1", "x", "", "a\nb", " "]),
    st.text(max_size=6),
)
_value = st.builds(lambda a, b: a + MARK + b, st.text(max_size=12), st.text(max_size=12))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.lists(_segment, min_size=1, max_size=5), value=_value, sep=st.sampled_from(["=", ":", " ", "=="]))
def test_any_override_is_applied_or_one_line_naming_its_key(path, value, sep):
    key = ".".join(path)
    try:
        overrides(f"{key}{sep}{value}")
    except ConfigError as e:
        msg = str(e)
        assert msg.startswith("--set ") and "\n" not in msg, msg
        assert MARK not in msg and value not in msg, msg
