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


def outer_saved_tensor_hooks() -> tuple | None:
    """The ``(pack, unpack)`` saved-tensor hooks active now (e.g. a memory tracer's), or
    None: kernels that install their own hooks pass every other saved tensor on to these."""
    top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    return top(False) if top is not None else None
