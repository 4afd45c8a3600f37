"""redact_url / redact_text and the log-record hook: a password in a URL never reaches any output."""
from __future__ import annotations

import logging
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neural_ingest.redact import install_log_redaction, redact_text, redact_url

# What a user name or (percent-encoded) password can hold in a URL's userinfo.
_userinfo = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters="@/?#[]:\\"), min_size=1, max_size=20
)
_host = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z0-9-]{1,8}){0,2}", fullmatch=True)
_path = st.from_regex(r"(/[A-Za-z0-9._~-]{0,8}){0,3}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https"]),
    user=_userinfo,
    password=st.text(min_size=1, max_size=30),
    host=_host,
    port=st.one_of(st.none(), st.integers(1, 65535)),
    path=_path,
)
def test_redact_url_keeps_everything_but_the_password(scheme, user, password, host, port, path):
    hostport = f"{host}:{port}" if port else host
    url = f"{scheme}://{user}:{quote(password, safe='')}@{hostport}{path}"
    assert redact_url(url) == f"{scheme}://{user}:***@{hostport}{path}"


@pytest.mark.parametrize(
    "url, expect",
    [
        ("https://user:secret@host:9200", "https://user:***@host:9200"),
        ("http://user:s3cret@127.0.0.1:9299/idx", "http://user:***@127.0.0.1:9299/idx"),
        ("https://ghp_token123@host/x", "https://***@host/x"),  # a bare userinfo is usually a token
        ("https://u:p@ss@host:9200", "https://u:***@host:9200"),  # an unescaped @ in the password
        ("https://api.example.com/v1?api-key=k3y&model=m", "https://api.example.com/v1?api-key=***&model=m"),
        ("https://host/x?token=t0k&sig=abc#frag", "https://host/x?token=***&sig=***#frag"),
        ("https://[::1:9200", "https://[::1:9200"),  # unparseable, no credentials: unchanged
        ("https://u:pw@[::1:9200", "https://***@[::1:9200"),  # unparseable: whatever precedes the @ goes
        ("http://127.0.0.1:9200", "http://127.0.0.1:9200"),
    ],
)
def test_redact_url_cases(url, expect):
    assert redact_url(url) == expect


def test_redact_text_finds_urls_inside_messages():
    msg = "cannot reach OpenSearch at 'https://admin:hunter2@node-1:9200/_bulk' (ConnectionError(https://a:b2@n2))"
    out = redact_text(msg)
    assert "hunter2" not in out and "b2@" not in out
    assert "https://admin:***@node-1:9200/_bulk" in out and "https://a:***@n2" in out
    assert "tok42" not in redact_text("headers {'Authorization': 'Bearer tok42'}")


@pytest.fixture
def redacting_logs():
    before = logging.getLogRecordFactory()
    install_log_redaction()
    install_log_redaction()  # idempotent: one hook, not two
    yield
    logging.setLogRecordFactory(before)


def test_log_records_of_any_library_are_redacted(redacting_logs, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("opensearch", "urllib3"):  # the CLI quiets these (ERROR) for its own runs in this process
        caplog.set_level(logging.DEBUG, logger=name)
    logging.getLogger("opensearch").warning("GET %s [status:N/A]", "http://elastic:pa55word@127.0.0.1:9299/")
    try:
        raise ConnectionError("Failed to connect to https://elastic:pa55word@node:9200")
    except ConnectionError:
        logging.getLogger("urllib3.connectionpool").exception("retrying")
    text = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert "pa55word" not in text
    assert "http://elastic:***@127.0.0.1:9299/" in text and "https://elastic:***@node:9200" in text
