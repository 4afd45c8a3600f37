"""Faster CPU inference for dense sentence-transformers models: ONNX Runtime or OpenVINO, optionally int8.

sentence-transformers' own ``backend="onnx"`` / ``"openvino"`` goes through Hugging Face Optimum,
whose releases pin ``transformers`` below the version this project runs (optimum-onnx 0.1: < 4.58;
optimum-intel 2.2: < 5.6), so this module does the same steps directly:

1. export: the whole SentenceTransformer (transformer, pooling, normalization: exactly the modules the
   run uses) is exported once to ONNX with ``torch.onnx.export`` (eager attention, dynamic batch and
   sequence axes), from the local weights only, into a cache directory keyed by the weights;
2. ``backend: onnx``: ONNX Runtime, after its transformer graph fusions (Attention, SkipLayerNorm,
   BiasGelu); ``quantize: int8``: dynamic int8 quantization (per-channel int8 weights, activations
   quantized at run time) of every projection except the feed-forward output ones, whose inputs
   (GELU outputs, with outliers) lose too much at per-tensor activation scales;
3. ``backend: openvino``: the OpenVINO CPU runtime (bf16 on CPUs with AMX / AVX512-BF16, else f32);
   ``quantize: int8``: int8 weights (NNCF weight compression) and the CPU plugin's dynamic int8
   quantization of activations in groups of 32.

The wrapper looks like a SentenceTransformer to the rest of the code (``encode``, ``tokenizer``,
``max_seq_length``, ``get_embedding_dimension``): texts are sorted by length within a call, batched,
tokenized with the model's own tokenizer and truncated at ``max_seq_length``, as sentence-transformers
does. The benchmark (benchmarks/run.py) reports each variant's speed-up and its smallest cosine to the
fp32 torch vectors over the whole corpus.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
EXPORT_VERSION = 1  # bump when the export or quantization recipe changes: cached files are rebuilt
OV_DYNAMIC_GROUP = 32


def default_cache_dir() -> Path:
    root = os.environ.get("NEURAL_INGEST_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "neural-ingest")
    return Path(root) / "backends"


def _weights_key(model_dir: Path, has_normalize: bool) -> str:
    """Identity of the exported graph: the weight and config files (names, sizes, mtimes), the modules."""
    h = hashlib.sha256(f"v{EXPORT_VERSION}:{has_normalize}".encode())
    for p in sorted(model_dir.rglob("*")):
        if p.is_file() and p.suffix in {".json", ".safetensors", ".bin", ".txt", ".model"}:
            st = p.stat()
            h.update(f"{p.relative_to(model_dir)}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def _atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Build ``path`` through a temporary name, so concurrent workers never load a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def export_onnx(model_dir: Path, out: Path, has_normalize: bool) -> Path:
    """The SentenceTransformer in ``model_dir`` (eager attention, so graph fusions apply) as one ONNX
    graph from token ids to the sentence embedding."""
    if out.exists():
        return out
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize

    st = SentenceTransformer(
        str(model_dir), device="cpu", local_files_only=True, model_kwargs={"attn_implementation": "eager"}
    )
    if not has_normalize:
        for i, m in enumerate(list(st)):
            if isinstance(m, Normalize):
                del st[i]
                break
    st.eval()

    class _Graph(torch.nn.Module):
        def __init__(self, inner: SentenceTransformer) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
            feats = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            out: torch.Tensor = self.inner(feats)["sentence_embedding"]
            return out

    sample = st.tokenizer(
        ["an example sentence", "a second, somewhat longer example sentence"], padding=True, return_tensors="pt"
    )
    args = tuple(sample[k] if k in sample else torch.zeros_like(sample["input_ids"]) for k in INPUTS)
    axes = {k: {0: "batch", 1: "sequence"} for k in INPUTS}
    axes["sentence_embedding"] = {0: "batch"}

    def write(tmp: Path) -> None:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Graph(st).eval(),
                args,
                str(tmp),
                input_names=list(INPUTS),
                output_names=["sentence_embedding"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )

    out.parent.mkdir(parents=True, exist_ok=True)
    return _atomic(out, write)


def _ort_model(onnx_path: Path, quantize: str | None, num_heads: int, hidden: int) -> Path:
    out = onnx_path.with_name(f"model-ort-{quantize or 'fp32'}.onnx")
    if out.exists():
        return out
    import onnx
    from onnxruntime.transformers.optimizer import optimize_model

    level = logging.getLogger("onnxruntime").level
    logging.getLogger("onnxruntime").setLevel(logging.WARNING)
    try:
        opt = optimize_model(str(onnx_path), model_type="bert", num_heads=num_heads, hidden_size=hidden, opt_level=1)
        if not quantize:
            return _atomic(out, lambda tmp: opt.save_model_to_file(str(tmp)))
        from onnxruntime.quantization import QuantType, quantize_dynamic

        fused = onnx_path.with_name("model-ort-fp32.onnx")
        if not fused.exists():
            _atomic(fused, lambda tmp: opt.save_model_to_file(str(tmp)))
        graph = onnx.load(str(fused))
        # Feed-forward output projections stay fp32: their inputs have outliers that per-tensor dynamic
        # activation scales cannot represent (min cosine to fp32 drops below 0.99 with them quantized).
        keep = [
            n.name
            for n in graph.graph.node
            if n.op_type == "MatMul" and "/output/dense/" in n.name and "/attention/" not in n.name
        ]
        return _atomic(
            out,
            lambda tmp: quantize_dynamic(
                str(fused),
                str(tmp),
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul", "Attention"],
                nodes_to_exclude=keep,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            ),
        )
    finally:
        logging.getLogger("onnxruntime").setLevel(level)


def _ov_model(onnx_path: Path, quantize: str | None) -> Path:
    if not quantize:
        return onnx_path
    out = onnx_path.with_name("model-ov-int8.xml")
    if out.exists():
        return out
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)
    compressed = nncf.compress_weights(ov.Core().read_model(str(onnx_path)), mode=nncf.CompressWeightsMode.INT8_ASYM)

    # The .xml names its weights file by stem: save under the final name in a private directory, then move
    # the .bin first and the .xml last (a reader waits for the .xml).
    tmp_dir = out.parent / f".ov-{os.getpid()}-{threading.get_ident()}"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    ov.save_model(compressed, str(tmp_dir / out.name))
    os.replace(tmp_dir / out.with_suffix(".bin").name, out.with_suffix(".bin"))
    os.replace(tmp_dir / out.name, out)
    tmp_dir.rmdir()
    return out


class FastSentenceModel:
    """A SentenceTransformer look-alike running an exported graph on ONNX Runtime or OpenVINO."""

    def __init__(
        self,
        st_model: Any,
        backend: str,
        quantize: str | None,
        threads: int | None,
        cache_dir: str | Path | None,
        model_dir: Path,
    ):
        from sentence_transformers.models import Normalize

        self.backend = backend
        self.quantize = quantize
        self.tokenizer = st_model.tokenizer
        self.max_seq_length = int(st_model.max_seq_length)
        self._dimension = int(st_model.get_embedding_dimension())
        self._similarity_fn_name = getattr(st_model, "_similarity_fn_name", None)
        self._has_normalize = any(isinstance(m, Normalize) for m in st_model)
        cfg = st_model[0].auto_model.config
        root = Path(cache_dir) if cache_dir else default_cache_dir()
        folder = root / f"{model_dir.name}-{_weights_key(model_dir, self._has_normalize)}"
        onnx_path = export_onnx(model_dir, folder / "model.onnx", self._has_normalize)
        threads = threads or os.cpu_count() or 1
        self._run: Callable[[dict[str, np.ndarray]], np.ndarray]  # token-id inputs -> sentence embeddings
        if backend == "onnx":
            import onnxruntime as ort

            path = _ort_model(onnx_path, quantize, int(cfg.num_attention_heads), int(cfg.hidden_size))
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            self._session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            self._inputs = {i.name for i in self._session.get_inputs()}
            self._run = lambda feed: self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0]
        elif backend == "openvino":
            import openvino as ov

            path = _ov_model(onnx_path, quantize)
            props: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1}
            if quantize:
                props["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = OV_DYNAMIC_GROUP
            compiled = ov.Core().compile_model(str(path), "CPU", props)
            request = compiled.create_infer_request()
            self._run = lambda feed: np.array(request.infer(feed)[0], copy=True)
        else:
            raise ValueError(f"unknown backend {backend!r}: torch, onnx or openvino")
        self.path = str(path)
        log.info("dense backend %s%s from %s", backend, f" ({quantize})" if quantize else "", path)

    def get_embedding_dimension(self) -> int:
        return self._dimension

    def __iter__(self) -> Iterator[Any]:  # no torch modules: normalization is inside the graph
        return iter(())

    def encode(
        self,
        texts: Sequence[str] | str,
        batch_size: int = 32,
        convert_to_numpy: bool = True,
        normalize_embeddings: bool = False,
        show_progress_bar: bool | None = None,
        **_: Any,
    ) -> np.ndarray:
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        out = np.zeros((len(items), self._dimension), dtype=np.float32)
        order = np.argsort([-len(t) for t in items], kind="stable")  # as sentence-transformers does
        for start in range(0, len(items), max(1, batch_size)):
            idx = order[start : start + batch_size]
            enc = self.tokenizer(
                [items[i] for i in idx], padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="np"
            )
            feed = {k: np.asarray(enc[k], dtype=np.int64) for k in INPUTS if k in enc}
            feed.setdefault("token_type_ids", np.zeros_like(feed["input_ids"]))
            out[idx] = self._run(feed)
        if normalize_embeddings:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out[0] if single else out


def load_fast(
    st_model: Any, backend: str, quantize: str | None, threads: int | None, cache_dir: str | None, model_dir: Path
) -> FastSentenceModel:
    """Wrap a loaded (and configured) SentenceTransformer's graph in the faster runtime."""
    try:
        return FastSentenceModel(st_model, backend, quantize, threads, cache_dir, Path(model_dir))
    except ImportError as e:
        extra = "onnxruntime onnx onnx-ir" if backend == "onnx" else "openvino nncf onnx"
        raise RuntimeError(
            f"encoder backend {backend!r} needs packages that are not installed ({e.name or e}): "
            f"pip install 'neural-ingest[fast]' (or: pip install {extra})"
        ) from None


def describe(model: Any) -> dict[str, Any]:
    return {
        "backend": getattr(model, "backend", "torch"),
        "quantize": getattr(model, "quantize", None),
        "graph": getattr(model, "path", None),
    }
