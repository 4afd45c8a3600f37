"""neural_ingest/tls.py: which settings warn, and the plain-HTTP probe."""
from __future__ import annotations

import logging

from neural_ingest.config import load_config
from neural_ingest.tls import speaks_plain_http, tls_warnings

CONFIG = """
source: {type: opensearch, hosts: ["https://reader:pw-src@src:9200"], index: old, verify_certs: false}
encoders:
  - {type: openai, url: "https://api.example.com/v1", model: m, dimension: 3, verify_certs: false}
  - {type: sentence_transformers, model: all-MiniLM-L6-v2, field: local}
sink: {type: opensearch, hosts: ["https://h1:9200", "https://h2:9200"], index: new, verify_certs: false}
"""


def test_every_block_that_turns_certificate_checks_off_warns_once(tmp_path, caplog):
    (tmp_path / "c.yaml").write_text(CONFIG)
    with caplog.at_level(logging.WARNING, logger="neural_ingest.tls"):
        cfg = load_config(tmp_path / "c.yaml")
    warned = [r.getMessage() for r in caplog.records if r.name == "neural_ingest.tls"]
    assert warned == tls_warnings(cfg) and len(warned) == 3
    source, encoder, sink = warned
    assert source.startswith("source.verify_certs is false: the TLS certificate of https://reader:***@src:9200 is not checked")
    assert encoder.startswith("encoders.0.verify_certs is false: the TLS certificate of https://api.example.com/v1")
    assert sink.startswith("sink.verify_certs is false: the TLS certificate of https://h1:9200, https://h2:9200")
    assert all("\n" not in w and "pw-src" not in w for w in warned)


def test_defaults_do_not_warn(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG.replace("verify_certs: false", "verify_certs: true"))
    assert tls_warnings(load_config(tmp_path / "c.yaml")) == []


def test_plain_http_probe(opensearch_url):
    assert speaks_plain_http(opensearch_url.replace("http://", "https://"))
    assert not speaks_plain_http("https://127.0.0.1:1")  # nothing listens


def test_plain_http_hosts_with_verify_certs_false_still_warn(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG.replace("https://h1", "http://h1").replace("https://h2", "http://h2"))
    sink = tls_warnings(load_config(tmp_path / "c.yaml"))[-1]
    assert sink == ("sink.verify_certs is false, and http://h1:9200, http://h2:9200 is plain HTTP without TLS anyway: "
                    "traffic and credentials can be read on the way")
