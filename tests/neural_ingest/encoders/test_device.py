"""device: auto picks CUDA when torch sees a GPU (GPU workers), CPU otherwise; explicit choices win."""
from __future__ import annotations

import pytest

from neural_ingest.encoders.device import resolve_device


@pytest.mark.parametrize("available, want", [(True, "cuda"), (False, "cpu")])
def test_auto_follows_cuda_availability(monkeypatch, available, want):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert resolve_device("auto") == want


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_explicit_device_is_honoured(monkeypatch, device):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: device != "cpu")
    assert resolve_device(device) == device


class _Stop(Exception):
    pass


def test_dense_encoder_loads_on_cuda_when_a_gpu_is_visible(monkeypatch, minilm_dir):
    """On a GPU worker the model is put on CUDA (the constructor is stubbed: this machine has no GPU)."""
    import sentence_transformers
    import torch

    from neural_ingest.config import SentenceTransformersEncoderConfig
    from neural_ingest.encoders.dense import SentenceTransformerEncoder

    seen = {}

    def fake_model(path, device=None, **kw):
        seen.update(path=path, device=device)
        raise _Stop

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", fake_model)
    enc = SentenceTransformerEncoder(SentenceTransformersEncoderConfig(model=str(minilm_dir), device="auto"))
    with pytest.raises(_Stop):
        enc.load_model()
    assert seen["device"] == "cuda"
