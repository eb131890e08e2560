"""Depthwise convolution with a faster CPU backward.

oneDNN's CPU backward for depthwise convolutions is slow where DARTS needs it most: the input
gradient of dilated and of strided depthwise convs (up to 100x the forward time in
channels-last), and the weight gradient of 5x5 kernels. :class:`DepthwiseConv2d` computes the
input gradient as a *forward* depthwise convolution instead: the output gradient, zero-filled
between the strided positions and padded by the kernel's extent, convolved with the flipped
kernel. The weight gradient is a compiled kernel (:mod:`nasspeech.kernels.native`; oneDNN's
where it is unavailable, for bf16 and inside a double backward), and is skipped when the
weight is frozen (the first-order alpha step). On other devices, on fake tensors and inside
:func:`nasspeech.kernels.dispatch.reference_kernels`, the module is a plain ``nn.Conv2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasspeech.kernels.dispatch import compiled_ops, fast_cpu_path
from nasspeech.kernels.layout import as_pair, weight_format
from nasspeech.kernels.precision import autocast, autocast_dtype
from nasspeech.kernels.recompute import mark_recomputable, recompute_depthwise_enabled


def depthwise_input_grad(grad: torch.Tensor, weight: torch.Tensor, input_hw: tuple[int, int],
                         stride: tuple[int, int], padding: tuple[int, int],
                         dilation: tuple[int, int]) -> torch.Tensor:
    """The input gradient of ``conv2d(x, weight, stride, padding, dilation, groups=C)`` as a
    stride-1 forward convolution of the (zero-upsampled, padded) output gradient with the
    flipped kernel."""
    kernel = weight.shape[-2:]
    extent = tuple(d * (k - 1) for d, k in zip(dilation, kernel))
    flipped = weight.flip(-1, -2)
    channels = grad.shape[1]
    if stride == (1, 1) and all(2 * p == e for p, e in zip(padding, extent)):
        return F.conv2d(grad, flipped, None, 1, padding, dilation, channels)
    b, _, out_h, out_w = grad.shape
    (h, w), (sh, sw) = input_hw, stride
    top, left = extent[0] - padding[0], extent[1] - padding[1]
    fmt = (torch.channels_last
           if grad.is_contiguous(memory_format=torch.channels_last) and not grad.is_contiguous()
           else torch.contiguous_format)
    spread = torch.empty((b, channels, h + extent[0], w + extent[1]), dtype=grad.dtype,
                         device=grad.device, memory_format=fmt).zero_()
    spread[:, :, top : top + sh * (out_h - 1) + 1 : sh, left : left + sw * (out_w - 1) + 1 : sw] = grad
    return F.conv2d(spread, flipped, None, 1, 0, dilation, channels)


def depthwise_weight_grad(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                          stride: tuple[int, int], padding: tuple[int, int],
                          dilation: tuple[int, int]) -> torch.Tensor:
    """The weight gradient of ``conv2d(x, weight, stride, padding, dilation, groups=C)``: the
    compiled kernel (:mod:`nasspeech.kernels.native`) for fp32 when no graph of the backward
    is being built, oneDNN's otherwise (bf16, double backward, no compiler)."""
    if not torch.is_grad_enabled() and (ops := compiled_ops(grad, x)) is not None:
        return ops.depthwise_weight_grad(grad, x, list(weight.shape[-2:]), list(stride),
                                         list(padding), list(dilation)).to(
            memory_format=weight_format(weight))
    return torch.ops.aten.convolution_backward(
        grad, x, weight, None, stride, padding, dilation, False, (0, 0), x.shape[1],
        (False, True, False))[1]


class _DepthwiseConv2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, stride, padding, dilation):  # type: ignore[override]
        # the input is needed only for the weight gradient
        ctx.save_for_backward(x if weight.requires_grad else None, weight)
        ctx.conv = (stride, padding, dilation, tuple(x.shape[-2:]))
        return F.conv2d(x, weight, None, stride, padding, dilation, x.shape[1])

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        stride, padding, dilation, input_hw = ctx.conv
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = depthwise_input_grad(grad, weight, input_hw, stride, padding, dilation)
        if ctx.needs_input_grad[1]:
            grad_w = depthwise_weight_grad(grad, x, weight, stride, padding, dilation)
        return grad_x, grad_w, None, None, None


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
                     padding: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
    """``F.conv2d(x, weight, groups=C)`` with the CPU backward of this module."""
    return _DepthwiseConv2dFunction.apply(x, weight, stride, padding, dilation)


class DepthwiseConv2d(nn.Conv2d):
    """A bias-free depthwise ``nn.Conv2d`` (same parameters and names) whose CPU backward is
    computed as described in the module docstring."""

    def __init__(self, channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1) -> None:
        super().__init__(channels, channels, kernel_size, stride, padding, dilation,
                         groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight  # as used now (a functional call swaps it for this call only)
        low = autocast_dtype(x.device.type)
        if not recompute_depthwise_enabled() or low not in (None, torch.bfloat16):
            return self._conv(x, weight)
        # recomputed in the backward pass, outside the forward's autocast region: enter it again
        precision, device = ("fp32" if low is None else "bf16"), x.device.type

        def recompute(inp: torch.Tensor) -> torch.Tensor:
            with autocast(device, precision):
                return self._conv(inp, weight)

        return mark_recomputable(self._conv(x, weight), x, recompute)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        padding = as_pair(self.padding)  # type: ignore[arg-type]
        extent = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
        if not fast_cpu_path(x) or any(p > e for p, e in zip(padding, extent)):
            return self._conv_forward(x, weight, None)
        low = autocast_dtype(x.device.type)
        if low is not None:  # autocast's casts, made here: the backward needs one dtype
            x, weight = x.to(low), weight.to(low)
        return depthwise_conv2d(x, weight, as_pair(self.stride), padding, as_pair(self.dilation))
