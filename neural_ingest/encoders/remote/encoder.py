"""Remote encoders: the same :class:`~neural_ingest.encoders.base.Encoder` interface as the local
models, with a :class:`~.client.RemoteClient` as the "model" each worker process loads once.

``load_model`` builds the client, runs the kind's pre-flight (ML Commons: the model exists, its
algorithm) and, unless ``probe: false``, sends one short text: that checks the URL and the key before
any document is read, and gives the dimension when the config does not state it.

Per-record failures: when some texts of a batch fail for good, ``encode`` keeps every text's result
and raises; the encode DoFn then retries the batch one text at a time, and each of those calls is
answered from the kept results without another request. So only the texts that really failed become
dead letters (with the HTTP status and the service's message) and the rest of the batch goes on.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import SecretStr

from neural_ingest.encoders.base import EncodeError, Encoder, Loaded, ModelInfo, Vector
from neural_ingest.encoders.remote.adapters import ADAPTERS
from neural_ingest.encoders.remote.client import RemoteClient, RemoteError, RemoteSetupError
from neural_ingest.encoders.remote.redact import Redactor, protect_logs, safe_url
from neural_ingest.redact import SECRET_NAME
from neural_ingest.tls import ca_certs_problem, plain_http_problem

log = logging.getLogger(__name__)

PROBE_TEXT = "neural-ingest probe"


def secrets_of(cfg: Any) -> list[str]:
    """Every secret value in a remote encoder config (SecretStr fields, in dicts too)."""
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, SecretStr):
            out.append(v.get_secret_value())
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)

    for name in type(cfg).model_fields:
        walk(getattr(cfg, name))
    return [s for s in out if s]


def redactor_for(cfg: Any) -> Redactor:
    """A Redactor for every secret of the config: SecretStr fields, the Basic-auth pair, and values of
    URL query parameters that look like keys (``?api-key=...``, ``&token=...``) or URL userinfo."""
    r = Redactor(secrets_of(cfg))
    url = getattr(cfg, "url", "") or ""
    try:
        parts = urlsplit(url)
        r.add(parts.password)
        r.add(*(v for k, v in parse_qsl(parts.query) if SECRET_NAME.search(k)))
    except ValueError:
        pass
    if getattr(cfg, "password", None) is not None:
        r.add_basic_auth(getattr(cfg, "username", None), cfg.password.get_secret_value())
    return r


class RemoteEncoder(Encoder[RemoteClient]):
    """One class for every remote kind; ``cfg.type`` picks the request/response adapter."""

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.kind = cfg.kind

    # -- identity / sizing
    def share_key(self) -> str:
        # Equal configs (secrets included, hashed) share one client per process; the key shows no secret.
        blob = json.dumps(
            self.cfg.model_dump(),
            sort_keys=True,
            default=lambda o: o.get_secret_value() if isinstance(o, SecretStr) else str(o),
        )
        return f"remote:{self.cfg.type}:{hashlib.sha256(blob.encode()).hexdigest()[:20]}"

    def batch_size(self) -> int:
        return int(self.cfg.batch_size)

    # -- loading
    def load_model(self) -> Loaded[RemoteClient]:
        c = self.cfg
        problem = ca_certs_problem(f"{c.type} encoder ca_certs", c.ca_certs)
        if problem:
            raise RemoteSetupError(problem)
        redact = redactor_for(c)
        protect_logs(redact)
        adapter = ADAPTERS[c.type](c, redact)
        client = RemoteClient(c, adapter, redact, dimension=c.dimension if c.output == "dense" else None)
        extra: dict[str, Any] = {"type": c.type, "url": redact(safe_url(adapter.display_url()))}
        extra.update(adapter.setup(client))
        dimension = c.dimension
        if c.output == "dense" and dimension is None and extra.get("embedding_dimension"):
            dimension = client.dimension = int(extra["embedding_dimension"])
        if c.probe:
            res = client.encode_all([PROBE_TEXT])[0]
            if isinstance(res, Exception):
                plain = (plain_http_problem(f"{c.type} encoder url", [c.url], "enable TLS on the service")
                         if getattr(res, "reason", "") == "connection" else None)
                raise RemoteSetupError(
                    redact(plain) if plain else f"{c.type} encoder: the probe request failed: {res} "
                    f"(check url, model and api_key; set probe: false to skip this check)"
                ) from None
            if c.output == "dense":
                if dimension is None:
                    dimension = client.dimension = int(res.shape[0])
                extra["probed_dimension"] = int(res.shape[0])
        info = ModelInfo(
            name=c.name or getattr(c, "model", None) or getattr(c, "model_id", None) or extra["url"],
            kind=c.output,
            dimension=dimension if c.output == "dense" else None,
            similarity=c.similarity if c.output == "dense" else None,
            normalized=c.normalized,
            extra=extra,
        )
        log.info("remote encoder %s ready (%s, dim=%s)", client.label, c.output, info.dimension)
        return Loaded(client, info)

    # -- encoding
    def encode(self, loaded: Loaded[RemoteClient], texts: Sequence[str]) -> list[Vector]:
        return self._encode(loaded.model, texts, query=False)

    def encode_queries(self, loaded: Loaded[RemoteClient], texts: Sequence[str]) -> list[Vector]:
        return self._encode(loaded.model, texts, query=True)

    def _encode(self, client: RemoteClient, texts: Sequence[str], *, query: bool) -> list[Vector]:
        if len(texts) == 1:
            found, res = client.memo.pop(texts[0])
            if found:  # the DoFn's one-by-one retry of a batch that partly failed
                if isinstance(res, Exception):
                    raise res
                return [res]
        results = client.encode_all(list(texts), query=query)
        errors = [r for r in results if isinstance(r, Exception)]
        if not errors:
            return results
        if len(texts) == 1:
            raise errors[0]
        client.memo.put_all(texts, results)
        first = errors[0]
        reasons = sorted({getattr(e, "reason", type(e).__name__) for e in errors})
        raise EncodeError(
            f"{len(errors)} of {len(texts)} texts failed ({', '.join(reasons)}); first: {first}",
        )


__all__ = ["PROBE_TEXT", "RemoteEncoder", "RemoteError", "RemoteSetupError", "redactor_for", "secrets_of"]
