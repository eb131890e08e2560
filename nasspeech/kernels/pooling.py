"""3x3 max pooling (padding 1, stride 1 or 2) with a compiled CPU kernel and a uint8 argmax.

PyTorch's channels-last max pooling runs about 11x from its memory bound at the few channels
of a DARTS cell and keeps int64 indices for its backward. :class:`MaxPool3x3` runs the
compiled kernels of ``csrc/max_pool.cpp`` instead (:mod:`nasspeech.kernels.native`): the
forward writes the output and, per output element, the window tap (0..8, row-major) of its
maximum as one byte, 8x less memory kept than int64 indices; the backward gathers the output
gradient through those taps. Argmax ties and NaNs are chosen as PyTorch chooses them (the
first maximum in window order; the last NaN). The backward is itself differentiable (its
derivative is the gather of values at the same taps), so a double backward
(``create_graph=True``) works.

The compiled path runs only for fp32 channels-last tensors on
:func:`nasspeech.kernels.dispatch.fast_cpu_path`, outside tracing and ONNX export, with the
kernels built; everything else is ``nn.MaxPool2d``'s, whose parameters the module keeps.
"""

from __future__ import annotations

import torch
from torch import nn

from nasspeech.kernels.dispatch import compiled_ops
from nasspeech.kernels.native import native_ops


class _MaxPool3x3Function(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, stride):  # type: ignore[override]
        y, taps = native_ops().max_pool3x3_forward(x, stride)
        ctx.save_for_backward(taps)
        ctx.geometry = (x.shape[-2], x.shape[-1], stride)
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (taps,) = ctx.saved_tensors
        return _ScatterFunction.apply(grad, taps, *ctx.geometry), None


class _ScatterFunction(torch.autograd.Function):
    """The pooling's input gradient: ``grad`` sent to the chosen taps (linear in ``grad``)."""

    @staticmethod
    def forward(ctx, grad, taps, height, width, stride):  # type: ignore[override]
        ctx.save_for_backward(taps)
        ctx.stride = stride
        return native_ops().max_pool3x3_backward(grad, taps, height, width, stride)

    @staticmethod
    def backward(ctx, grad_grad):  # type: ignore[override]
        (taps,) = ctx.saved_tensors
        return _GatherFunction.apply(grad_grad, taps, ctx.stride), None, None, None, None


class _GatherFunction(torch.autograd.Function):
    """The values of ``x`` at the chosen taps: the transpose of :class:`_ScatterFunction`."""

    @staticmethod
    def forward(ctx, x, taps, stride):  # type: ignore[override]
        ctx.save_for_backward(taps)
        ctx.geometry = (x.shape[-2], x.shape[-1], stride)
        return native_ops().max_pool3x3_gather(x, taps, stride)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (taps,) = ctx.saved_tensors
        return _ScatterFunction.apply(grad, taps, *ctx.geometry), None, None


def max_pool3x3(x: torch.Tensor, stride: int) -> torch.Tensor:
    """``F.max_pool2d(x, 3, stride, 1)`` with the compiled kernels (``x``: a 4-d fp32 CPU
    tensor; the output is channels-last). Needs :func:`native_ops`."""
    return _MaxPool3x3Function.apply(x, stride)


def compiled_pooling_applies(x: torch.Tensor) -> bool:
    """Whether :class:`MaxPool3x3` runs the compiled kernels on ``x``."""
    return (compiled_ops(x) is not None and x.dim() == 4 and x.shape[-2] > 0
            and x.shape[-1] > 0 and x.is_contiguous(memory_format=torch.channels_last))


class MaxPool3x3(nn.MaxPool2d):
    """``nn.MaxPool2d(3, stride, padding=1)`` (same attributes, no parameters) whose CPU
    forward and backward are the compiled kernels described in the module docstring."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__(3, stride=stride, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.stride in (1, 2) and self.kernel_size == 3 and self.padding == 1
                and self.dilation == 1 and not self.ceil_mode and not self.return_indices
                and compiled_pooling_applies(x)):
            return max_pool3x3(x, int(self.stride))
        return super().forward(x)
