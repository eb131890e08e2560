"""When the toolkit's CPU-specific kernels run, and what they see of a tracer's hooks.

Some ops have a faster CPU path (depthwise-convolution backward, average pooling as a
convolution, gradient layout guards). They run on real CPU tensors only: GPUs, fake and meta
tensors (the memory estimator's traces model what a GPU runs) and code inside
:func:`reference_kernels` take PyTorch's own kernels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch._subclasses.fake_tensor import FakeTensor

from nasspeech.kernels.native import native_ops

_FAST_CPU = True


@contextlib.contextmanager
def reference_kernels() -> Iterator[None]:
    """Run the toolkit's ops with PyTorch's own kernels (what a GPU runs)."""
    global _FAST_CPU
    previous, _FAST_CPU = _FAST_CPU, False
    try:
        yield
    finally:
        _FAST_CPU = previous


def fast_cpu_path(x: torch.Tensor) -> bool:
    """Whether the CPU-specific kernels apply to ``x`` (a real CPU tensor)."""
    return _FAST_CPU and x.device.type == "cpu" and not isinstance(x, FakeTensor)


def compiled_ops(*tensors: torch.Tensor) -> object | None:
    """``torch.ops.nasspeech`` (:mod:`nasspeech.kernels.native`) where the compiled kernels may
    run on ``tensors``: real fp32 CPU tensors on the fast path (:func:`fast_cpu_path`), outside
    tracing and ONNX export, with the kernels built; else None. Each kernel's caller adds what
    its kernel needs besides (layout, shape)."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():  # before any size check
        return None
    if not all(t.dtype == torch.float32 and fast_cpu_path(t) for t in tensors):
        return None
    return native_ops()


def outer_saved_tensor_hooks() -> tuple | None:
    """The ``(pack, unpack)`` saved-tensor hooks active now (e.g. a memory tracer's), or
    None: kernels that install their own hooks pass every other saved tensor on to these."""
    top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    return top(False) if top is not None else None
