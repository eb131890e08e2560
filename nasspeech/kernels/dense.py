"""Dense (groups=1) convolution with a compiled CPU weight gradient for narrow search cells.

oneDNN's weight gradient for the 1x1, 1x7 and 7x1 convolutions of DARTS cells runs far from
the CPU's bound at 8 channels (25-66 GFLOP/s), and at 8 channels its combined input+weight
backward is slower than an input-only plus a weight-only call. :class:`DenseConv2d` (an
``nn.Conv2d``: same parameters, names and state_dict) computes, where it is routed (see
:func:`routes_to_compiled`), the input gradient with an input-only ``convolution_backward``
and the weight gradient with the compiled kernel ``torch.ops.nasspeech.dense_weight_grad``
(:mod:`nasspeech.kernels.native`); the input gradient is skipped for an input that needs
none (the first cell's), and a frozen weight (the alpha step) takes ``nn.Conv2d``'s path,
which computes only the input gradient anyway. Inside a backward that builds a graph
(the exact Hessian's double backward), without a compiler, for bf16 autocast, other dtypes,
under ONNX export or tracing, on other devices, fake tensors and inside
:func:`nasspeech.kernels.dispatch.reference_kernels` it runs PyTorch's kernels.

Routing rule (measured at one thread, batch 16, channels-last fp32, AMD Zen 5, min of 7
alternating rounds). The kernel alone, oneDNN's weight gradient time / the compiled one's:
at 8 channels (128x128) 1x1 2.9x, 1x7 1.4-1.5x, 7x1 1.6x (stride 1 or 2); 1x1 from 24 or 32
down to 8 channels 3.0x and 7.4x, 48 or 64 down to 16 (64x64) 1.3x and 2.4x, 96 or 128 down
to 32 (32x32) 1.0x and 1.1x; at 16 and 32 channels in and out 1x1 1.0x, 7x1 1.1x, 1x7 0.8x.
The compiled kernel runs at 80-145 GFLOP/s at 8 input channels, 175-210 at 16 or more. So it
takes the convolutions with fewer than 16 input or output channels and the 1x1 ones down to
at most 16 channels; oneDNN keeps the rest.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasspeech.kernels.dispatch import compiled_ops
from nasspeech.kernels.layout import as_pair, weight_format
from nasspeech.kernels.precision import autocast_dtype
from nasspeech.kernels.recompute import saving_recipe_of


def routes_to_compiled(c_in: int, c_out: int, kernel: tuple[int, int]) -> bool:
    """Whether the compiled weight gradient beats oneDNN's for this convolution (the
    measured rule of the module docstring)."""
    return min(c_in, c_out) < 16 or (kernel == (1, 1) and c_in > c_out and c_out <= 16)


def dense_weight_grad(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                      stride: tuple[int, int], padding: tuple[int, int],
                      dilation: tuple[int, int]) -> torch.Tensor:
    """The weight gradient of ``conv2d(x, weight, stride, padding, dilation)``: the compiled
    kernel for fp32 when no graph of the backward is being built, oneDNN's otherwise."""
    if not torch.is_grad_enabled() and (ops := compiled_ops(grad, x)) is not None:
        return ops.dense_weight_grad(grad, x, list(weight.shape[-2:]), list(stride),
                                     list(padding), list(dilation)).to(
            memory_format=weight_format(weight))
    return torch.ops.aten.convolution_backward(
        grad, x, weight, None, stride, padding, dilation, False, (0, 0), 1,
        (False, True, False))[1]


class _DenseConv2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, stride, padding, dilation):  # type: ignore[override]
        # the weight is needed only for the input gradient
        ctx.save_for_backward(x, weight if x.requires_grad else None)
        ctx.conv = (stride, padding, dilation)
        ctx.kernel = tuple(weight.shape[-2:])
        return F.conv2d(x, weight, None, stride, padding, dilation)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.conv
        need_x, need_w = ctx.needs_input_grad[:2]
        if weight is None:  # only its shape is read
            weight = grad.new_zeros(grad.shape[1], x.shape[1], *ctx.kernel)
        if torch.is_grad_enabled():  # a graph of this backward is built: differentiable ops
            grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
                grad, x, weight, None, stride, padding, dilation, False, (0, 0), 1,
                (need_x, need_w, False))
            return grad_x, grad_w, None, None, None
        grad_x = grad_w = None
        if need_x:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, stride, padding, dilation, False, (0, 0), 1,
                (True, False, False))[0]
        if need_w:
            grad_w = dense_weight_grad(grad, x, weight, stride, padding, dilation)
        return grad_x, grad_w, None, None, None


def dense_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
                 padding: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
    """``F.conv2d(x, weight)`` (groups=1, no bias) with the CPU backward of this module."""
    return _DenseConv2dFunction.apply(x, weight, stride, padding, dilation)


class DenseConv2d(nn.Conv2d):
    """A bias-free dense ``nn.Conv2d`` (same parameters and names) whose CPU weight gradient
    is compiled where :func:`routes_to_compiled` says so (module docstring)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1) -> None:
        super().__init__(c_in, c_out, kernel_size, stride, padding, dilation, bias=False)
        self.compiled_weight_grad = routes_to_compiled(c_in, c_out, as_pair(kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a depthwise output marked for recomputation is not kept but recomputed
        return saving_recipe_of(x, self._forward, values_needed=self.weight.requires_grad)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if (not self.compiled_weight_grad or self.padding_mode != "zeros"
                or isinstance(self.padding, str) or autocast_dtype(x.device.type) is not None
                or not (torch.is_grad_enabled() and self.weight.requires_grad)
                or compiled_ops(x, self.weight) is None):  # a frozen weight: input gradient only
            return super().forward(x)
        return dense_conv2d(x, self.weight, as_pair(self.stride), as_pair(self.padding),
                            as_pair(self.dilation))
