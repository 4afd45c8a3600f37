"""Chunks: a list of records or Documents as one Beam element (file sources, read to write), and its coder.

Beam samples the size of a PCollection's elements (its first ten a bundle processor, then fewer) by encoding
them; with the default coder a sampled chunk of a thousand Documents is pickled whole, and an Arrow table
of a row group serialised, only to be measured. ``ChunkCoder`` pickles a chunk only where it really crosses a
stage boundary and estimates its size from its length; ``TableCoder`` the same for Arrow tables.
"""
from __future__ import annotations

import pickle
from typing import Any

from apache_beam import coders


class Chunk(list):  # type: ignore[type-arg]  # a hint class; Beam matches no List[...] by it
    """Type hint of a PCollection of chunks (the elements are plain lists): its coder is ``ChunkCoder``. The
    DoFns that take chunks declare ``Any`` inputs, since a type hint that is a class matches no ``List[...]``."""


class ArrowTable:
    """Type hint of a PCollection of ``pyarrow.Table`` elements: its coder is ``TableCoder``."""


CHUNK_ITEM_BYTES = 2048  # an estimate of one record or Document (for Beam's size metric only)


class ChunkCoder(coders.Coder):
    def encode(self, value: Any) -> bytes:
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> Any:
        return pickle.loads(encoded)

    def estimate_size(self, value: Any) -> int:
        return CHUNK_ITEM_BYTES * len(value) if isinstance(value, list) else CHUNK_ITEM_BYTES

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self) -> Any:
        return Chunk


class TableCoder(ChunkCoder):
    def estimate_size(self, value: Any) -> int:
        return int(getattr(value, "nbytes", 0))

    def to_type_hint(self) -> Any:
        return ArrowTable


coders.registry.register_coder(Chunk, ChunkCoder)
coders.registry.register_coder(ArrowTable, TableCoder)
