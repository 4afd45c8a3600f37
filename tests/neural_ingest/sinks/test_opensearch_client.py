"""Client auth from config. What a request carries is seen by a loopback recorder: the local
OpenSearch has no security plugin, so it would accept any Authorization header without looking."""
from __future__ import annotations

import base64
import contextlib
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
        def do_GET(self):
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


# ------------------------------------------------------------------ TLS settings and their errors
def _self_signed(tmp_path):
    """A certificate for 127.0.0.1 signed by nobody the client trusts (openssl, like an admin would)."""
    import shutil
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "node.pem", tmp_path / "node.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_node(recorder, tmp_path):
    """The recorder behind TLS with a self-signed certificate: https://127.0.0.1:<port>, and the cert's path."""
    import socket
    import ssl

    cert, key = _self_signed(tmp_path)
    plain_url, _seen = recorder
    port = int(plain_url.rsplit(":", 1)[1])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def pump(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def serve():  # terminate TLS, forward plain HTTP to the recorder
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                conn = ctx.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                raw.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", port))
            threading.Thread(target=pump, args=(conn, upstream), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, conn), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}", str(cert)
    stop.set()
    listener.close()


def test_missing_ca_certs_is_named_for_sink_and_source(tmp_path):
    from neural_ingest.config import OpenSearchSourceConfig
    from neural_ingest.sinks.base import SinkError

    missing = str(tmp_path / "ca.pem")
    with pytest.raises(SinkError, match=f"^sink.ca_certs: {missing} does not exist"):
        make_client(OpenSearchSinkConfig(hosts=["https://h:9200"], index="x", ca_certs=missing))
    with pytest.raises(SinkError, match=f"^source.ca_certs: {missing} does not exist"):
        make_client(OpenSearchSourceConfig(type="opensearch", hosts=["https://h:9200"], index="x", ca_certs=missing))


def test_https_to_the_plain_http_node_is_named(opensearch_url):
    from opensearchpy import exceptions as os_exc

    from neural_ingest.sinks.opensearch import connection_problem

    cfg = OpenSearchSinkConfig(hosts=[opensearch_url.replace("http://", "https://u:pw-9@")], index="x")
    with pytest.raises(os_exc.ConnectionError) as e:
        make_client(cfg).info()
    msg = connection_problem(cfg, e.value)
    assert msg.startswith(f"sink.hosts: {cfg.hosts[0].replace('pw-9', '***')} speaks plain HTTP, not TLS: use http://")
    assert "pw-9" not in msg and "\n" not in msg


def test_untrusted_certificate_and_the_ca_that_fixes_it(tls_node):
    from opensearchpy import exceptions as os_exc

    from neural_ingest.sinks.opensearch import connection_problem

    url, cert = tls_node
    cfg = OpenSearchSinkConfig(hosts=[url], index="x")
    with pytest.raises(os_exc.SSLError) as e:
        make_client(cfg).info()
    assert connection_problem(cfg, e.value) == (
        f"the TLS certificate of {url} is not trusted: set sink.ca_certs to the CA bundle (PEM) that signed it"
    )
    assert make_client(cfg.model_copy(update={"ca_certs": cert})).info()["version"]["number"] == "2.19.6"
