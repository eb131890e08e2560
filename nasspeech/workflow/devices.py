"""Device choice and bf16 autocast: the same code path on CPU and CUDA."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager as ContextManager

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is CUDA when available, else CPU; asking for ``cuda`` without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device "
                           f"(torch {torch.__version__}); use device: auto or cpu")
    return torch.device(name)


def autocast(device: torch.device, enabled: bool) -> ContextManager:
    """bf16 autocast on ``device`` when ``enabled`` (the config's ``amp``), else a no-op."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
