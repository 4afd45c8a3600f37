"""Device choice shared by the local encoders."""
from __future__ import annotations


def resolve_device(device: str) -> str:
    """``auto`` picks CUDA when a GPU is visible, else CPU; explicit choices are honoured."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
