"""A oneDNN hazard: narrow channels-last strided 1x1 convolutions on CPU, and the helpers
that route such convolutions onto oneDNN's plain-layout kernel."""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import FakeTensor

#: Fewest input channels for which oneDNN's channels-last strided 1x1 conv backward is safe.
#: Measured on an AMD EPYC (torch 2.13 CPU build, one thread, batch 8): 4-14 input channels
#: crash at 64x64 (14 also at 128x128, not at 32x32; nothing at 8x8); 16-48 survive at 32-128.
ONEDNN_SAFE_CHANNELS = 16


def onednn_narrow_conv_hazard(x: torch.Tensor) -> bool:
    """Whether a strided 1x1 conv of ``x`` would hit a oneDNN heap corruption.

    With one intra-op thread, the CPU build of torch 2.13 corrupts the heap on some CPUs
    (AMD EPYC seen) in the backward of a channels-last 1x1 stride-2 ``Conv2d`` with fewer than
    16 input channels on large enough inputs (values right, then the process dies). Such narrow convs run in the
    contiguous layout instead: the same convolution, another oneDNN kernel. Real CPU tensors
    only (the memory estimator's fake tensors trace what a GPU runs).
    """
    return (x.device.type == "cpu" and not isinstance(x, FakeTensor)
            and x.dim() == 4 and x.shape[1] < ONEDNN_SAFE_CHANNELS)


class _PlainGrad(torch.autograd.Function):
    """Identity whose backward hands on the gradient in row-major strides (a channels-last
    gradient would pull the conv's backward back onto the channels-last kernel)."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return plain_strides(grad)


def plain_grad(x: torch.Tensor) -> torch.Tensor:
    """``x``, with its gradient handed on in row-major strides."""
    return _PlainGrad.apply(x)


def plain_strides(t: torch.Tensor) -> torch.Tensor:
    """``t`` with row-major strides. ``contiguous()`` is not enough: a 1x1 conv weight in
    channels-last strides counts as contiguous, and oneDNN picks its layout from the strides."""
    expected, step = [], 1
    for size in reversed(t.shape):
        expected.insert(0, step)
        step *= size
    if list(t.stride()) == expected:
        return t
    return t.clone(memory_format=torch.contiguous_format)
