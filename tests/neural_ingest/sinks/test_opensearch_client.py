"""Client auth from config. What a request carries is seen by a loopback recorder: the local
OpenSearch has no security plugin, so it would accept any Authorization header without looking."""
from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from neural_ingest.config import OpenSearchSinkConfig
from neural_ingest.sinks.opensearch_client import make_client


@pytest.fixture
def recorder():
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append({k.title(): v for k, v in self.headers.items()})
            body = json.dumps({"version": {"number": "2.19.6", "distribution": "opensearch"}, "tagline": "x"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()


def test_basic_auth(recorder):
    url, seen = recorder
    cfg = OpenSearchSinkConfig(hosts=[url], index="x", username="ingest", password="pw-123")
    make_client(cfg).info()
    assert seen[0]["Authorization"] == "Basic " + base64.b64encode(b"ingest:pw-123").decode()


def test_aws_sigv4_signs_requests(recorder, monkeypatch):
    url, seen = recorder
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-secret-key")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    cfg = OpenSearchSinkConfig(hosts=[url], index="x", aws_sigv4={"region": "eu-west-1", "service": "aoss"})
    make_client(cfg).info()
    auth = seen[0]["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/aoss/aws4_request" in auth
    assert "X-Amz-Date" in seen[0] and "wJalrXUtnFEMI" not in json.dumps(seen)


def test_tls_verification_is_on_by_default():
    cfg = OpenSearchSinkConfig(hosts=["https://search.example.com:9200"], index="x")
    conn = make_client(cfg).transport.get_connection()
    assert cfg.verify_certs is True
    assert conn.pool.cert_reqs == "CERT_REQUIRED"
