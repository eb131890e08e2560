"""Memory formats of conv operands: keep gradients in the activations' format; shared helpers.

Some backward formulas hand back a gradient in another memory format than the activation
(a channel slice of a concatenation, the expanded gradient of a mean, the zero-padded
gradient of a spatial slice). Every later kernel then mixes channels-last and contiguous
operands, which on CPU takes slow strided paths. :func:`channels_last_grad` is an identity
whose backward makes the gradient channels-last (a copy only when it is not already).
"""

from __future__ import annotations

import torch

from nasspeech.kernels.dispatch import fast_cpu_path


class _ChannelsLastGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        if grad.dim() == 4 and not grad.is_contiguous(memory_format=torch.channels_last):
            grad = grad.contiguous(memory_format=torch.channels_last)
        return grad


def channels_last_grad(x: torch.Tensor) -> torch.Tensor:
    """``x``, with its gradient made channels-last in the backward pass; only for a
    channels-last ``x`` on the CPU fast path (anything else is returned as it is)."""
    if (x.dim() != 4 or not x.requires_grad or not fast_cpu_path(x) or x.is_contiguous()
            or not x.is_contiguous(memory_format=torch.channels_last)):
        return x
    return _ChannelsLastGrad.apply(x)


def as_pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    """A conv argument (kernel, stride, padding, dilation) as a (height, width) pair."""
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def weight_format(weight: torch.Tensor) -> torch.memory_format:
    """The memory format a gradient of ``weight`` should have: channels-last where the
    weight is (and is not also contiguous), else contiguous."""
    return (torch.channels_last if weight.is_contiguous(memory_format=torch.channels_last)
            and not weight.is_contiguous() else torch.contiguous_format)

