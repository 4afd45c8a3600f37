"""One tokenization per text: a window's tokens serve both the batching's sort and the model's forward pass.

The length-sorted window (transforms/batching.py) tokenizes its texts to sort them and count truncation;
``SentenceTransformer.encode`` would then tokenize each batch again (about 60% of a tiny model's cost).
Here the window's tokens are kept and each batch goes to the model as the features
``SentenceTransformer.encode`` itself would build (sentence-transformers 5/6: ``preprocess`` = the
tokenizer with ``padding=True, truncation="longest_first"`` at ``max_seq_length``, then ``forward`` ->
``sentence_embedding``, optionally L2-normalized), so the vectors are the same:

- the tokens come from a private copy of the model's own fast (Rust) tokenizer, set to the model's
  truncation (length, side) with padding off; a text that lost tokens to truncation says so (its
  ``overflowing`` part), which is the window's truncation count, without a second pass;
- a batch is padded to its longest text with the tokenizer's pad ids and side, as the tokenizer pads.

The path is only taken where it is checked to give the same features: at load, a probe batch (empty,
non-ASCII, over-length texts) must give exactly what the model's ``preprocess`` gives, and the model must
have no default prompt, no ``truncate_dim`` and plain (not flattened) text input; anything else (fast
ONNX / OpenVINO backends, sparse and remote encoders, chunks) encodes from texts as before.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from neural_ingest.encoders.base import Tokenized

log = logging.getLogger(__name__)

# Feature name -> the tokenizers.Encoding attribute that holds it.
_FIELDS = (("input_ids", "ids"), ("token_type_ids", "type_ids"), ("attention_mask", "attention_mask"))
_PROBE = [
    "",
    "a",
    "Hello, world!",
    "  leading and trailing whitespace\t\n ",
    "naïve café, Straße, 東京, ☃ and 👍🏽",
    "long " * 400,  # over any max_seq_length: truncated
]


class TokenPath:
    """A SentenceTransformer's tokenizer at the model's truncation, and encode from its tokens."""

    def __init__(self, model: Any):
        tok = model.tokenizer
        self.max_length = int(model.max_seq_length)
        backend = copy.deepcopy(tok.backend_tokenizer)  # private: the shared one is re-set by every call
        backend.no_padding()
        backend.enable_truncation(self.max_length, stride=0, strategy="longest_first", direction=tok.truncation_side)
        self.backend = backend
        names = set(tok.model_input_names)
        self.fields = [(k, a) for k, a in _FIELDS if k in names]
        self.pad = {"input_ids": tok.pad_token_id, "token_type_ids": tok.pad_token_type_id, "attention_mask": 0}
        self.left = tok.padding_side == "left"

    def tokenize(self, texts: Sequence[str]) -> Tokenized:
        encs = self.backend.encode_batch(list(texts), add_special_tokens=True)
        return Tokenized([len(e) for e in encs], [bool(e.overflowing) for e in encs], encs)

    def features(self, encs: Sequence[Any]) -> dict[str, Any]:
        """The batch's model inputs, padded to its longest text (what the tokenizer's ``padding=True`` gives)."""
        import torch

        width = max(len(e) for e in encs)
        out: dict[str, Any] = {}
        for key, attr in self.fields:
            arr = np.full((len(encs), width), self.pad[key], dtype=np.int64)
            for i, e in enumerate(encs):
                v = getattr(e, attr)
                if self.left:
                    arr[i, width - len(v) :] = v
                else:
                    arr[i, : len(v)] = v
            out[key] = torch.from_numpy(arr)
        out["modality"] = "text"
        return out

    def encode(self, model: Any, encs: Sequence[Any], normalize: bool) -> np.ndarray:
        """``model.encode(texts, normalize_embeddings=normalize)`` of one batch, from its tokens."""
        import torch
        from sentence_transformers.util import batch_to_device

        if model.training:
            model.eval()
        with torch.inference_mode():
            features = batch_to_device(self.features(encs), model.device)
            emb = model(features)["sentence_embedding"]
            if normalize:
                emb = torch.nn.functional.normalize(emb, p=2, dim=1)
            emb = emb.cpu()
            if emb.dtype == torch.bfloat16:
                emb = emb.float()
        out: np.ndarray = emb.numpy()
        return out


def token_path(model: Any) -> TokenPath | None:
    """A TokenPath for a loaded SentenceTransformer where it gives exactly ``encode``'s features, else None."""
    why = _unsupported(model)
    if why is None:
        try:
            path = TokenPath(model)
            if _same_features(path.features(path.tokenize(_PROBE).tokens or []), model.preprocess(_PROBE)):
                return path
            why = "its tokens differ from the model's preprocess"
        except Exception as e:  # noqa: BLE001 - the check decides; encoding from texts always works
            why = f"{type(e).__name__}: {e}"
    log.info("encoding from texts (tokenized in encode, not once per window): %s", why)
    return None


def _unsupported(model: Any) -> str | None:
    """Why encode's features would not be the tokenizer's plain output (prompts, truncate_dim, packed inputs)."""
    tok = getattr(model, "tokenizer", None)
    if tok is None or getattr(tok, "backend_tokenizer", None) is None:
        return "no fast tokenizer"
    if not callable(getattr(model, "preprocess", None)) or not getattr(model, "max_seq_length", None):
        return "not a sentence-transformers model with preprocess and max_seq_length"
    default = getattr(model, "default_prompt_name", None)
    if default is not None and (getattr(model, "prompts", None) or {}).get(default):
        return "the model has a default prompt"
    if getattr(model, "truncate_dim", None) is not None:
        return "the model truncates its vectors (truncate_dim)"
    if getattr(model[0], "can_flatten_inputs", False):
        return "the model packs its inputs (flash attention)"
    if getattr(model.device, "type", "cpu") == "hpu":
        return "HPU graphs pad their own inputs"
    return None


def _same_features(ours: dict[str, Any], theirs: dict[str, Any]) -> bool:
    import torch

    if set(ours) != set(theirs):
        return False
    for k, v in theirs.items():
        o = ours[k]
        if isinstance(v, torch.Tensor):
            if not (isinstance(o, torch.Tensor) and o.dtype == v.dtype and o.shape == v.shape and torch.equal(o, v.cpu())):
                return False
        elif o != v:
            return False
    return True
