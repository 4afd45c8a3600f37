"""Request and response shapes, one small adapter per remote encoder kind.

An adapter builds ``(url, body, headers)`` for a list of texts and turns a parsed JSON response into
one raw item per text (a list of numbers, or a token -> weight map). Everything else (batching,
retries, limits, validation, redaction) is the shared :class:`~.client.RemoteClient`'s job.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from neural_ingest.config import ConfigError
from neural_ingest.config.remote_encoders import (
    HttpEncoderConfig,
    OpenAIEncoderConfig,
    OpenSearchMLEncoderConfig,
    TEIEncoderConfig,
    _RemoteEncoderBase,
)
from neural_ingest.encoders.remote.client import RemoteSetupError
from neural_ingest.encoders.remote.jsonpath import PathError, evaluate, has_wildcard
from neural_ingest.encoders.remote.redact import Redactor, safe_url

if TYPE_CHECKING:  # pragma: no cover
    from neural_ingest.encoders.remote.client import RemoteClient

C = TypeVar("C", bound=_RemoteEncoderBase)
Request = tuple[str, Any, dict[str, str]]  # (url, JSON body, headers)


class Adapter(Generic[C]):
    """The request/response shape of one remote kind, over that kind's config ``C``."""

    method = "POST"

    def __init__(self, cfg: C, redactor: Redactor) -> None:
        self.cfg = cfg
        self.redact = redactor

    def display_url(self) -> str:
        return self.cfg.url

    def request(self, texts: Sequence[str], *, query: bool = False) -> Request:
        raise NotImplementedError

    def parse(self, payload: Any, n: int) -> list[Any]:
        raise NotImplementedError

    def max_batch(self) -> int | None:
        """Texts per request the API allows at most (None: no fixed limit)."""
        return None

    def headers(self) -> dict[str, str]:
        """Configured headers plus ``Authorization: Bearer <api_key>`` when an api_key is set."""
        h = {k: v.get_secret_value() for k, v in self.cfg.headers.items()}
        if self.cfg.api_key is not None and not any(k.lower() == "authorization" for k in h):
            h["Authorization"] = f"Bearer {self.cfg.api_key.get_secret_value()}"
        return h

    def auth(self) -> tuple[str, str] | None:
        return None

    def setup(self, client: RemoteClient) -> dict[str, Any]:
        """Pre-flight beyond the probe (e.g. ask ML Commons about the model); returns ModelInfo extras."""
        return {}


def _join(base: str, path: str) -> str:
    base = base.rstrip("/")
    return base if base.endswith(path) else base + path


def _vectors_from(value: Any, n: int, what: str) -> list[Any]:
    """A path result as one item per text: a single vector/map for one text is wrapped."""
    if n == 1 and (isinstance(value, dict) or (isinstance(value, list) and value and not isinstance(value[0], (list, dict)))):
        return [value]
    if not isinstance(value, list):
        raise ValueError(f"{what} is {type(value).__name__}, expected a list with one embedding per text")
    return value


def sparse_from_pairs(item: Any, vocab: dict[int, str] | None = None) -> Any:
    """TEI-style ``[{"index": 2054, "value": 0.8}, ...]`` -> {"2054" or token: 0.8}; maps pass through."""
    if isinstance(item, list) and all(isinstance(p, dict) and "index" in p and "value" in p for p in item):
        out: dict[str, Any] = {}
        for p in item:
            idx = p["index"]
            key = vocab.get(idx, str(idx)) if vocab and isinstance(idx, int) else str(idx)
            out[key] = out.get(key, 0) + p["value"] if key in out else p["value"]
        return out
    return item


# --------------------------------------------------------------------------- OpenAI
class OpenAIAdapter(Adapter[OpenAIEncoderConfig]):
    """OpenAI-compatible ``POST {url}/embeddings`` (OpenAI, Azure-style gateways, vLLM, infinity, Ollama...)."""

    def display_url(self) -> str:
        return _join(self.cfg.url, "/embeddings")

    def request(self, texts: Sequence[str], *, query: bool = False) -> Request:
        body: dict[str, Any] = {"model": self.cfg.model, "input": list(texts), "encoding_format": "float"}
        if self.cfg.send_dimensions and self.cfg.dimension:
            body["dimensions"] = self.cfg.dimension
        return self.display_url(), body, self.headers()

    def parse(self, payload: Any, n: int) -> list[Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
            raise ValueError('expected {"data": [{"index": i, "embedding": [...]}, ...]}')
        items = payload["data"]
        if all(isinstance(d, dict) and isinstance(d.get("index"), int) for d in items):
            items = sorted(items, key=lambda d: d["index"])
            idx = [d["index"] for d in items]
            if idx != list(range(len(items))):
                raise ValueError(f"embedding indexes {idx[:10]} are not 0..{len(items) - 1}")
        return [d.get("embedding") if isinstance(d, dict) else d for d in items]


# --------------------------------------------------------------------------- TEI
class TEIAdapter(Adapter[TEIEncoderConfig]):
    """text-embeddings-inference: ``POST /embed`` (dense) and ``POST /embed_sparse`` (sparse)."""

    def __init__(self, cfg: TEIEncoderConfig, redactor: Redactor) -> None:
        super().__init__(cfg, redactor)
        self._vocab: dict[int, str] | None = None
        if cfg.output == "sparse" and cfg.vocab_path:
            self._vocab = load_vocab(cfg.vocab_path)

    def display_url(self) -> str:
        return _join(self.cfg.url, "/embed_sparse" if self.cfg.output == "sparse" else "/embed")

    def request(self, texts: Sequence[str], *, query: bool = False) -> Request:
        body: dict[str, Any] = {"inputs": list(texts), "truncate": self.cfg.truncate}
        if self.cfg.output == "dense":
            body["normalize"] = self.cfg.normalize
        return self.display_url(), body, self.headers()

    def parse(self, payload: Any, n: int) -> list[Any]:
        if not isinstance(payload, list):
            raise ValueError(f"expected a JSON list with one embedding per text, got {type(payload).__name__}")
        if self.cfg.output == "sparse":
            return [sparse_from_pairs(item, self._vocab) for item in payload]
        return payload


def load_vocab(path: str) -> dict[int, str]:
    """Token id -> token from a tokenizer.json or a vocab.txt (one token per line)."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "tokenizer.json" if (p / "tokenizer.json").is_file() else p / "vocab.txt"
    if not p.is_file():
        raise ConfigError(f"vocab_path {path}: no tokenizer.json or vocab.txt there")
    if p.suffix == ".json":
        vocab = json.loads(p.read_text(encoding="utf-8"))["model"]["vocab"]
        if isinstance(vocab, dict):
            return {int(i): tok for tok, i in vocab.items()}
        return {i: tok[0] if isinstance(tok, list) else tok for i, tok in enumerate(vocab)}
    return {i: line.rstrip("\n") for i, line in enumerate(p.read_text(encoding="utf-8").splitlines())}


# --------------------------------------------------------------------------- ML Commons
class OpenSearchMLAdapter(Adapter[OpenSearchMLEncoderConfig]):
    """``POST /_plugins/_ml/models/<model_id>/_predict`` on a model deployed in ML Commons.

    Local text-embedding and sparse-encoding models take ``{"text_docs": [...]}``; remote models take
    ``{"parameters": {"input": [...]}}`` (``parameters_key`` names the parameter: ``texts`` for a
    Cohere-style connector). ``input: auto`` picks by the model's algorithm. Outputs are read from
    ``inference_results[*].output[*]``: ``data`` (dense tensors) or ``dataAsMap.response`` (sparse
    maps, or what a post_process_function returns), unless ``response_path`` says otherwise.
    """

    def __init__(self, cfg: OpenSearchMLEncoderConfig, redactor: Redactor) -> None:
        super().__init__(cfg, redactor)
        self.algorithm: str | None = None  # learnt in setup(): REMOTE, TEXT_EMBEDDING, SPARSE_ENCODING...

    def display_url(self) -> str:
        return self._predict_url(self.cfg.model_id)

    def _predict_url(self, model_id: str) -> str:
        return f"{self.cfg.url.rstrip('/')}/_plugins/_ml/models/{model_id}/_predict"

    def auth(self) -> tuple[str, str] | None:
        # Empty values (``${OPENSEARCH_USER:-}`` unset) mean no Basic auth, as for the sink.
        if self.cfg.username and self.cfg.password is not None and self.cfg.password.get_secret_value():
            return (self.cfg.username, self.cfg.password.get_secret_value())
        return None

    def _input_mode(self) -> str:
        if self.cfg.input != "auto":
            return self.cfg.input
        # The REST _predict of a remote (connector) model reads `parameters`: ML Commons 2.19 answers
        # text_docs with "Invalid payload: ... ${parameters.input}" as the pre_process_function only
        # runs for in-cluster callers (neural search, ingest processors). Local models read text_docs.
        return "parameters" if self.algorithm == "REMOTE" else "text_docs"

    def request(self, texts: Sequence[str], *, query: bool = False) -> Request:
        model_id = (self.cfg.query_model_id if query else None) or self.cfg.model_id
        if self._input_mode() == "parameters":
            body: dict[str, Any] = {"parameters": {self.cfg.parameters_key: list(texts)}}
        else:
            body = {"text_docs": list(texts)}
            if self.algorithm == "TEXT_EMBEDDING":
                body.update(return_number=True, target_response=["sentence_embedding"])
        return self._predict_url(model_id), body, self.headers()

    def parse(self, payload: Any, n: int) -> list[Any]:
        if self.cfg.response_path:
            return _vectors_from(evaluate(self.cfg.response_path, payload), n, self.cfg.response_path)
        if not isinstance(payload, dict) or not isinstance(payload.get("inference_results"), list):
            raise ValueError('expected {"inference_results": [...]}')
        items: list[Any] = []
        for r in payload["inference_results"]:
            code = r.get("status_code") if isinstance(r, dict) else None
            if code is not None and code != 200:
                raise ValueError(f"an inference result has status_code {code}")
            for out in (r or {}).get("output", []):
                items.extend(self._items(out))
        return items

    def _items(self, out: dict[str, Any]) -> list[Any]:
        if "data" in out:  # a tensor: one dense vector
            return [out["data"]]
        dm = out.get("dataAsMap")
        if isinstance(dm, dict):
            if "response" in dm:
                resp = dm["response"]
                # sparse local models: [{token: weight}, ...]; post-processed lists of vectors
                if isinstance(resp, list) and resp and isinstance(resp[0], (dict, list)):
                    return list(resp)
                return [resp]
            # a remote model without post_process_function: the service's own body
            for path in ("$.data[*].embedding", "$.embeddings", "$.embedding"):
                try:
                    return _vectors_from(evaluate(path, dm), 1 if path == "$.embedding" else 2, path)
                except (PathError, ValueError):
                    continue
            raise ValueError(
                f"output {out.get('name')!r} has dataAsMap keys {sorted(dm)[:8]}: add a post_process_function "
                "to the connector or set response_path"
            )
        raise ValueError(f"output {out.get('name')!r} has neither data nor dataAsMap")

    def setup(self, client: RemoteClient) -> dict[str, Any]:
        """Ask ML Commons about the model: it must exist; learn its algorithm, state and dimension."""
        url = f"{self.cfg.url.rstrip('/')}/_plugins/_ml/models/{self.cfg.model_id}"
        try:
            resp = client.session.get(
                url,
                headers=self.headers(),
                auth=self.auth(),
                timeout=(self.cfg.connect_timeout, self.cfg.timeout),
                verify=client.verify,
            )
        except Exception as e:  # noqa: BLE001
            from neural_ingest.tls import plain_http_problem

            plain = plain_http_problem("opensearch_ml encoder url", [self.cfg.url])
            raise RemoteSetupError(
                self.redact(plain or f"opensearch_ml: cannot reach {safe_url(self.cfg.url)}: {type(e).__name__}: {e}")
            ) from None
        if resp.status_code == 404:
            raise RemoteSetupError(
                f"opensearch_ml: no model {self.cfg.model_id!r} in ML Commons at {self.cfg.url}; "
                "check model_id (GET /_plugins/_ml/models/_search lists them)"
            )
        if resp.status_code >= 400:
            raise RemoteSetupError(
                self.redact(f"opensearch_ml: GET model {self.cfg.model_id}: HTTP {resp.status_code}: {resp.text[:300]}")
            )
        meta = resp.json()
        self.algorithm = str(meta.get("algorithm") or "").upper() or None
        info: dict[str, Any] = {
            "model_id": self.cfg.model_id,
            "algorithm": self.algorithm,
            "model_state": meta.get("model_state"),
        }
        dim = (meta.get("model_config") or {}).get("embedding_dimension")
        if dim:
            info["embedding_dimension"] = int(dim)
        if self.algorithm in ("SPARSE_ENCODING", "SPARSE_TOKENIZE") and self.cfg.output != "sparse":
            raise RemoteSetupError(f"opensearch_ml: model {self.cfg.model_id} is {self.algorithm}: set output: sparse")
        if self.algorithm == "TEXT_EMBEDDING" and self.cfg.output != "dense":
            raise RemoteSetupError(f"opensearch_ml: model {self.cfg.model_id} is TEXT_EMBEDDING: set output: dense")
        return info


# --------------------------------------------------------------------------- generic HTTP
# What ML Commons' built-in pre/post-processing functions do, so a connector's action can be reused.
PRE_PROCESS = {
    "connector.pre_process.openai.embedding": ("input", None),
    "connector.pre_process.default.embedding": ("input", None),
    "connector.pre_process.cohere.embedding": ("texts", None),
    "connector.pre_process.bedrock.embedding": ("inputText", 1),
}
POST_PROCESS = {
    "connector.post_process.openai.embedding": "$.data[*].embedding",
    "connector.post_process.cohere.embedding": "$.embeddings",
    "connector.post_process.default.embedding": "$",
    "connector.post_process.bedrock.embedding": "$.embedding",
}
_PLACEHOLDER = re.compile(r"\$\{(parameters|credential)\.([A-Za-z0-9_\-]+)\}")


class HttpTemplateAdapter(Adapter[HttpEncoderConfig]):
    """A request template in the style of an ML Commons connector action: ``url``, ``headers`` and
    ``request_body`` with ``${parameters.X}`` / ``${credential.X}`` placeholders, the texts going into
    ``${parameters.<input>}``; the result read with ``response_path`` (or a post_process_function)."""

    def __init__(self, cfg: HttpEncoderConfig, redactor: Redactor) -> None:
        super().__init__(cfg, redactor)
        pre = PRE_PROCESS.get(cfg.pre_process_function or "", (None, None))
        self.input_name = cfg.input_parameter or pre[0] or "input"
        self._max_batch = pre[1]
        # the config guarantees one of the two (HttpEncoderConfig / OpenSearchMLEncoderConfig validators)
        self.response_path: str = cfg.response_path or POST_PROCESS[cfg.post_process_function or ""]
        self.method = cfg.method

    def max_batch(self) -> int | None:
        return self._max_batch

    def _value(self, group: str, name: str, texts: Sequence[str] | None) -> Any:
        if group == "credential":
            if name not in self.cfg.credential:
                raise ConfigError(f"http encoder: ${{credential.{name}}} is used but credential.{name} is not set")
            return self.cfg.credential[name].get_secret_value()
        if name == self.input_name and texts is not None:
            return texts[0] if self._max_batch == 1 else list(texts)
        if name not in self.cfg.parameters:
            raise ConfigError(f"http encoder: ${{parameters.{name}}} is used but parameters.{name} is not set")
        return self.cfg.parameters[name]

    def _fill_text(self, template: str, texts: Sequence[str] | None, *, json_context: bool) -> str:
        def sub(m: re.Match[str]) -> str:
            v = self._value(m.group(1), m.group(2), texts)
            if isinstance(v, str):
                # Inserted without quotes, like ML Commons: the template supplies them. Escaped for JSON.
                return json.dumps(v, ensure_ascii=False)[1:-1] if json_context else v
            return json.dumps(v, ensure_ascii=False)

        return _PLACEHOLDER.sub(sub, template)

    def _fill_obj(self, node: Any, texts: Sequence[str]) -> Any:
        if isinstance(node, dict):
            return {k: self._fill_obj(v, texts) for k, v in node.items()}
        if isinstance(node, list):
            return [self._fill_obj(v, texts) for v in node]
        if isinstance(node, str):
            m = _PLACEHOLDER.fullmatch(node)
            if m:  # a whole-value placeholder keeps its type (the list of texts stays a list)
                return self._value(m.group(1), m.group(2), texts)
            return self._fill_text(node, texts, json_context=False)
        return node

    def display_url(self) -> str:
        try:
            return self._fill_text(self.cfg.url, None, json_context=False)
        except ConfigError:
            return self.cfg.url

    def headers(self) -> dict[str, str]:
        h = {k: self._fill_text(v.get_secret_value(), None, json_context=False) for k, v in self.cfg.headers.items()}
        if self.cfg.api_key is not None and not any(k.lower() == "authorization" for k in h):
            h["Authorization"] = f"Bearer {self.cfg.api_key.get_secret_value()}"
        return h

    def request(self, texts: Sequence[str], *, query: bool = False) -> Request:
        url = self._fill_text(self.cfg.url, None, json_context=False)
        tpl = self.cfg.request_body
        if isinstance(tpl, str):
            raw = self._fill_text(tpl, texts, json_context=True)
            try:
                body = json.loads(raw)
            except ValueError as e:
                raise ConfigError(
                    f"http encoder: request_body is not valid JSON once filled in ({e}); "
                    "quote string placeholders, leave ${parameters." + self.input_name + "} unquoted"
                ) from None
        else:
            body = self._fill_obj(tpl, texts)
        return url, body, self.headers()

    def parse(self, payload: Any, n: int) -> list[Any]:
        value = evaluate(self.response_path, payload)
        if self.cfg.output == "sparse":
            value = _vectors_from(value, n, self.response_path)
            return [sparse_from_pairs(v) for v in value]
        return _vectors_from(value, n, self.response_path)


ADAPTERS: dict[str, type[Adapter[Any]]] = {
    "openai": OpenAIAdapter,
    "tei": TEIAdapter,
    "opensearch_ml": OpenSearchMLAdapter,
    "http": HttpTemplateAdapter,
}

__all__ = ["ADAPTERS", "Adapter", "has_wildcard", "load_vocab", "sparse_from_pairs"]
