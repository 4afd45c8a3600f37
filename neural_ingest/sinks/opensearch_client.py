"""One place that turns sink config into an opensearch-py client (hosts, TLS, auth, timeouts), and its errors
into one sentence with the fix."""
from __future__ import annotations

from typing import Any

from opensearchpy import OpenSearch, RequestsHttpConnection
from opensearchpy import exceptions as os_exc

from neural_ingest.config import OpenSearchSinkConfig, OpenSearchSourceConfig
from neural_ingest.redact import redact_text, redact_url
from neural_ingest.sinks.base import SinkError
from neural_ingest.tls import ca_certs_problem, plain_http_problem, ssl_problem


def config_prefix(cfg: OpenSearchSinkConfig | OpenSearchSourceConfig) -> str:
    """How messages name the block: sink.hosts or source.hosts."""
    return "source" if isinstance(cfg, OpenSearchSourceConfig) else "sink"


def connection_problem(cfg: OpenSearchSinkConfig | OpenSearchSourceConfig, err: Exception) -> str:
    """A cluster error as one sentence with the fix; never includes credentials."""
    where = config_prefix(cfg)
    host = redact_url(cfg.hosts[0])
    if isinstance(err, os_exc.AuthenticationException):
        return f"{host} rejected the credentials (401): check {where}.username and the password's environment variable"
    if isinstance(err, os_exc.AuthorizationException):
        return f"{host} refused access (403): the user needs index and cluster monitor permissions"
    if isinstance(err, os_exc.ConnectionError):  # SSLError included: https:// to a plain-HTTP node fails either way
        plain = plain_http_problem(f"{where}.hosts", cfg.hosts)
        if plain:
            return plain
    if isinstance(err, os_exc.SSLError):
        return ssl_problem(where, host, err, cfg.ca_certs)
    if isinstance(err, os_exc.ConnectionError):
        return f"cannot reach OpenSearch at {host}: check {where}.hosts and that the cluster is up"
    return f"OpenSearch at {host} answered with an error: {type(err).__name__}: {redact_text(str(err)[:300])}"


def _aws_auth(cfg: OpenSearchSinkConfig | OpenSearchSourceConfig) -> Any:
    """SigV4 signing for Amazon OpenSearch Service (es) and Serverless (aoss), default credential chain."""
    try:
        import boto3
    except ImportError:  # pragma: no cover - depends on the install
        raise RuntimeError(f"{config_prefix(cfg)}.aws_sigv4 needs boto3: pip install 'neural-ingest[aws]'") from None
    from opensearchpy import AWSV4SignerAuth

    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise RuntimeError(f"{config_prefix(cfg)}.aws_sigv4: no AWS credentials found (environment, profile or instance role)")
    sigv4 = cfg.aws_sigv4
    if sigv4 is None:
        raise RuntimeError(f"{config_prefix(cfg)}.aws_sigv4 is not set")
    return AWSV4SignerAuth(credentials, sigv4.region, sigv4.service)


def make_client(cfg: OpenSearchSinkConfig | OpenSearchSourceConfig, timeout: float | None = None) -> OpenSearch:
    problem = ca_certs_problem(f"{config_prefix(cfg)}.ca_certs", cfg.ca_certs)
    if problem:  # else: a generic TLS error at the first request that suggests setting what is set
        raise SinkError(problem)
    extra: dict[str, Any] = {}
    auth: Any = None
    if cfg.aws_sigv4:
        auth = _aws_auth(cfg)
        extra["connection_class"] = RequestsHttpConnection
    elif cfg.username:
        auth = (cfg.username, cfg.password.get_secret_value() if cfg.password else "")
    use_ssl = any(h.startswith("https://") for h in cfg.hosts)
    return OpenSearch(
        hosts=cfg.hosts,
        http_auth=auth,
        use_ssl=use_ssl,
        verify_certs=cfg.verify_certs if use_ssl else False,
        ca_certs=cfg.ca_certs,
        ssl_show_warn=False,
        timeout=timeout or (cfg.bulk.timeout if isinstance(cfg, OpenSearchSinkConfig) else cfg.timeout),
        http_compress=False,
        # one connection per concurrent bulk request (bulk.in_flight) plus one for everything else
        pool_maxsize=max(1, getattr(getattr(cfg, "bulk", None), "in_flight", 1)) + 1,
        **extra,
    )
