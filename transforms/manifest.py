"""The stamps manifest: what a reindex-built index holds, (id, raw-line digest, doc digest, text digest) per document,
kept in OpenSearch next to the reindex lock so a night need not read the live index's stamps nor parse unchanged lines.

- Written by every reindex build of a JSONL source (full or night): the pipeline writes one document per partition
  of the ids into the lock index (``manifest/<index>/<partition>``; read and written by id only, like the locks);
  the driver commits it (the header ``manifest/<index>``) only after validation, when the run had no dead letter
  and the rows add up to the index's count. Committing removes the manifest of the index it replaces.
- Tied to the exact index it describes: its uuid, its document count and each primary shard's ``max_seq_no``
  (any write to the index, by anyone, moves it), the model identity and the source config (its path excepted).
  A night whose live index does not match its header, or finds none, reads the live stamps as before.
- The raw-line digest is of the bytes the row's digests were computed from, in the same pass: a line whose bytes
  match a row is that row's document, so it is not parsed. 0: unknown (the line is parsed).

Digests are ints under 2**63: the first 15 hex digits of the stamp's sha256s, 63 bits of a raw line's blake2b.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import apache_beam as beam
import numpy as np

if TYPE_CHECKING:
    from neural_ingest.config import OpenSearchSinkConfig, OpenSearchSourceConfig

log = logging.getLogger(__name__)

Row: TypeAlias = tuple[str, int, int, int]  # a manifest row: (id, raw-line digest, doc digest, text digest)

VERSION = 1  # of the manifest's format and of the rules that map a line to its digests
PARTITIONS = PARTS = 64  # the ids' partitions: the join's keys (stamps travel in batches per partition, never one
# element a document), and one manifest part each


def partition(doc_id: str) -> int:
    """Stable across processes and runs (Python's hash() is not)."""
    return zlib.crc32(doc_id.encode("utf-8", "surrogatepass")) % PARTITIONS


def manifest_index(lock_index: str) -> str:
    """Manifests live in the lock index, next to the lock (its mapping is not dynamic: nothing of them is indexed)."""
    return lock_index


def header_id(index: str) -> str:
    return f"manifest/{index}"


def part_id(index: str, part: int) -> str:
    return f"manifest/{index}/{part}"


def line_digest(line: bytes) -> int:
    """A raw line's digest (63 bits: Beam's int coder is signed 64-bit), never 0 (0 is "unknown")."""
    return (int.from_bytes(hashlib.blake2b(line, digest_size=8).digest(), "big") >> 1) or 1


def short(hexdigest: str) -> int:
    """A stamp's sha256 hex digest -> its first 60 bits (15 hex digits)."""
    return int(hexdigest[:15], 16)


def source_hash(source: Any) -> str:
    """What maps a line to its id and digests: the source config (its path aside) and this format's version."""
    body = json.dumps([VERSION, source.model_dump(mode="json", exclude={"path"})], sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ManifestRef:
    """Where a committed manifest is and the index it describes (``live``: the reader config of that index)."""

    live: OpenSearchSourceConfig
    manifest_index: str
    index: str
    uuid: str
    parts: tuple[int, ...] = ()


@dataclass(frozen=True)
class ManifestOut:
    """Where a build writes its manifest parts (uncommitted until the driver commits them)."""

    sink: OpenSearchSinkConfig
    manifest_index: str
    alias: str
    index: str


# --------------------------------------------------------------------------- encoding
def encode_part(alias: str, index: str, part: int, rows: list[Row]) -> dict[str, Any]:
    return encode_block(alias, index, part, *block(rows))


def block(rows: list[Row]) -> tuple[list[str], np.ndarray]:
    """(id, raw, doc, content) rows -> (ids, an (n, 3) uint64 array): the form rows travel and are stored in."""
    return [r[0] for r in rows], np.array([r[1:] for r in rows], dtype=np.uint64).reshape(-1, 3)


def encode_block(alias: str, index: str, part: int, ids: list[str], nums: np.ndarray) -> dict[str, Any]:
    blob = zlib.compress(json.dumps(ids).encode("ascii"), 1)
    return {"alias": alias, "index": index, "kind": "part", "part": part, "rows": len(ids),
            "ids": base64.b64encode(blob).decode("ascii"),
            "nums": base64.b64encode(np.ascontiguousarray(nums, dtype=np.uint64).tobytes()).decode("ascii")}


def decode_part(doc: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    ids = json.loads(zlib.decompress(base64.b64decode(doc["ids"])))
    nums = np.frombuffer(base64.b64decode(doc["nums"]), dtype=np.uint64).reshape(-1, 3)
    if len(ids) != len(nums) or len(ids) != doc["rows"]:
        raise ValueError(f"manifest part {doc.get('part')} of {doc.get('index')} is inconsistent")
    return ids, nums


# --------------------------------------------------------------------------- the loaded manifest
class Manifest:
    """A committed manifest in memory: the rows per partition (ids, and (raw, doc, content) digests) for the join, and
    their raw-line digests sorted, with where each row is (partition << 32 | row), for the scan's lookups: two
    arrays of 8 bytes a document, looked up a chunk of lines at a time (numpy), not a dict entry each."""

    def __init__(self, parts: dict[int, tuple[list[str], np.ndarray]]):
        self.parts = parts
        raws, codes = [np.zeros(0, dtype=np.uint64)], [np.zeros(0, dtype=np.int64)]
        for part, (_, nums) in parts.items():
            known = np.flatnonzero(nums[:, 0] != 0)  # 0: no raw digest (the line is parsed)
            raws.append(nums[known, 0])
            codes.append((np.int64(part) << np.int64(32)) | known.astype(np.int64))
        raw, code = np.concatenate(raws), np.concatenate(codes)
        order = np.argsort(raw, kind="stable")
        self._raws, self._codes = raw[order], code[order]

    def lookup(self, raws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(codes, found) for raw-line digests: found[i] when a row has raws[i], codes[i] where that row is."""
        if not len(self._raws):
            return np.zeros(len(raws), dtype=np.int64), np.zeros(len(raws), dtype=bool)
        at = np.searchsorted(self._raws, raws).clip(max=len(self._raws) - 1)
        return self._codes[at], self._raws[at] == raws

    def rows(self, part: int) -> tuple[list[str], np.ndarray]:
        """(ids, (raw, doc, content) digests) of a partition."""
        got = self.parts.get(part)
        return got if got is not None else ([], np.zeros((0, 3), dtype=np.uint64))


NO_MANIFEST = Manifest({})  # a scan without one: every line is parsed


_CACHE: dict[tuple[str, str, str], Manifest] = {}
_LOCK = threading.Lock()


def load(ref: ManifestRef) -> Manifest:
    """The manifest of ``ref`` (read once per process: the scan's and the join's DoFns share it)."""
    key = (ref.manifest_index, ref.index, ref.uuid)
    with _LOCK:
        if key not in _CACHE:
            from neural_ingest.transforms.read_opensearch import client_for

            client = client_for(ref.live)
            try:
                _CACHE.clear()  # one live index at a time
                _CACHE[key] = Manifest(read_parts(client, ref.manifest_index, ref.index, ref.parts))
            finally:
                client.close()
        return _CACHE[key]


def read_parts(client: Any, mindex: str, index: str, parts: Iterable[int]) -> dict[int, tuple[list[str], np.ndarray]]:
    ids = [part_id(index, p) for p in parts]
    out: dict[int, tuple[list[str], np.ndarray]] = {}
    for i in range(0, len(ids), 8):  # a few MB a request
        for d in client.mget(index=mindex, body={"ids": ids[i:i + 8]}, params={"request_timeout": 120})["docs"]:
            if not d.get("found"):
                raise ValueError(f"manifest part {d['_id']} is missing")
            out[d["_source"]["part"]] = decode_part(d["_source"])
    return out


class WriteManifestFn(beam.DoFn):
    """(partition, [row batches]) -> the partition's part, written (uncommitted) to the manifest index."""

    def __init__(self, out: ManifestOut):
        self.out = out

    def setup(self) -> None:
        from neural_ingest.sinks.opensearch_client import make_client

        self.client = make_client(self.out.sink)

    def teardown(self) -> None:
        self.client.close()

    def process(self, item: tuple[int, Iterable[tuple[list[str], np.ndarray]]]) -> Iterable[Any]:
        part, blocks = item[0], list(item[1])
        ids = [i for b in blocks for i in b[0]]
        nums = np.concatenate([b[1] for b in blocks]) if blocks else np.zeros((0, 3), dtype=np.uint64)
        doc = encode_block(self.out.alias, self.out.index, part, ids, nums)
        self.client.index(index=self.out.manifest_index, id=part_id(self.out.index, part), body=doc,
                          params={"request_timeout": 120})
        return []


class ManifestRows(beam.PTransform[beam.PCollection[Any], beam.PCollection[Any]]):
    """(partition, (ids, digests)) blocks (manifest.block) -> written as the build's manifest parts."""

    def __init__(self, out: ManifestOut):
        super().__init__()
        self.out = out

    def expand(self, rows: beam.PCollection[Any]) -> beam.PCollection[Any]:
        written: beam.PCollection[Any] = rows | "ByPartition" >> beam.GroupByKey() | "WritePart" >> beam.ParDo(
            WriteManifestFn(self.out)
        )
        return written


# --------------------------------------------------------------------------- the driver's side
def fingerprint(client: Any, index: str) -> dict[str, Any]:
    """The index's uuid, count and each primary shard's max_seq_no: any write to the index changes it."""
    stats = client.indices.stats(index=index, metric="docs", params={"level": "shards"})["indices"][index]
    seq = sorted((int(s), c["seq_no"]["max_seq_no"]) for s, copies in stats["shards"].items() for c in copies
                 if c["routing"]["primary"])
    uuid = client.indices.get_settings(index=index, name="index.uuid", params={"flat_settings": "true"})[index]["settings"][
        "index.uuid"
    ]
    return {"uuid": uuid, "count": int(client.count(index=index)["count"]), "seq_no": [list(s) for s in seq]}


def _written_parts(client: Any, mindex: str, index: str) -> dict[int, int]:
    """part -> rows of what a build wrote for ``index``."""
    ids = [part_id(index, p) for p in range(PARTS)]
    got = client.mget(index=mindex, body={"ids": ids}, params={"_source_includes": "part,rows"})["docs"]
    return {d["_source"]["part"]: d["_source"]["rows"] for d in got if d.get("found")}


def commit(client: Any, mindex: str, alias: str, index: str, model_hash: str, source: str, replaces: str | None) -> str:
    """Commit the parts a build wrote for ``index`` (the header carries its fingerprint) and remove the manifest of
    the index it replaces. Returns why not, or "" when committed. Call only after the build validated, no dead letter."""
    client.indices.refresh(index=mindex)
    parts = _written_parts(client, mindex, index)
    fp = fingerprint(client, index)
    if sum(parts.values()) != fp["count"]:
        return f"{sum(parts.values())} manifest rows for {fp['count']} documents in {index}"
    header = {"alias": alias, "index": index, "kind": "header", "model_hash": model_hash, "source": source,
              "parts": sorted(parts), **fp}
    client.index(index=mindex, id=header_id(index), body=header, params={"refresh": "true"})
    if replaces:
        discard(client, mindex, replaces)
    return ""


def usable(client: Any, mindex: str, live: str, model_hash: str, source: str) -> tuple[dict[str, Any] | None, str]:
    """(the header of the live index's committed manifest when it describes that index exactly now, why not otherwise)."""
    from opensearchpy import exceptions as os_exc

    try:
        header = client.get(index=mindex, id=header_id(live))["_source"]
    except os_exc.NotFoundError:
        return None, f"no manifest for {live}"
    fp = fingerprint(client, live)
    for key, want in (("uuid", fp["uuid"]), ("count", fp["count"]), ("seq_no", fp["seq_no"]), ("model_hash", model_hash),
                      ("source", source)):
        if header.get(key) != want:
            return None, f"the manifest of {live} is stale ({key} {header.get(key)!r}, now {want!r})"
    return header, ""


def discard(client: Any, mindex: str, index: str) -> None:
    """Remove the manifest of ``index`` (header first: a manifest without its header is never read)."""
    from opensearchpy import helpers

    try:
        ids = [header_id(index)] + [part_id(index, p) for p in range(PARTS)]
        helpers.bulk(client, ({"_op_type": "delete", "_index": mindex, "_id": i} for i in ids), raise_on_error=False)
    except Exception as e:  # noqa: BLE001 - best effort: parts never committed are never read
        log.warning("could not remove the manifest of %s: %s", index, e)
