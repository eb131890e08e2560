"""Building blocks of the built-in candidate ops and cells (DARTS: ReLU -> conv -> BN).

Every block maps (B, C, H, W) -> (B, C', ceil(H/s), ceil(W/s)) for stride s in {1, 2};
:class:`Zero` works on any tensor. Registering them as ops is :mod:`nasspeech.ops.cnn`'s job.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasspeech.kernels.dense import DenseConv2d
from nasspeech.kernels.depthwise import DepthwiseConv2d, depthwise_conv2d
from nasspeech.kernels.dispatch import fast_cpu_path
from nasspeech.kernels.layout import channels_last_grad
from nasspeech.kernels.onednn import onednn_narrow_conv_hazard, plain_grad, plain_strides
from nasspeech.kernels.relu import relu_then


class ReLULed(nn.Sequential):
    """A Sequential that starts with a ReLU; the ReLU's output is not kept for the backward
    pass but recomputed (:func:`nasspeech.kernels.relu.relu_then`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self[0]
        if not isinstance(first, nn.ReLU) or first.inplace:
            return super().forward(x)
        return relu_then(x, self._after_relu)

    def _after_relu(self, x: torch.Tensor) -> torch.Tensor:
        for module in list(self)[1:]:
            x = module(x)
        return x


class ReLUConvBN(ReLULed):
    """ReLU -> Conv2d -> BatchNorm (the DARTS preprocessing block)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            DenseConv2d(c_in, c_out, kernel, stride=stride, padding=padding),
            nn.BatchNorm2d(c_out),
        )


class DilConv(ReLULed):
    """ReLU -> depthwise (dilated) conv -> pointwise conv -> BN."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int,
        relu_inplace: bool = False,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=relu_inplace),
            DepthwiseConv2d(c_in, kernel, stride, padding, dilation),
            DenseConv2d(c_in, c_out, 1),
            nn.BatchNorm2d(c_out),
        )


class SepConv(nn.Sequential):
    """Two depthwise-separable blocks; the first carries the stride.

    The second block's ReLU runs in place on the first block's BatchNorm output when that
    BatchNorm keeps its input (affine); search cells use BatchNorms that keep their output
    and turn the in-place ReLU off (:mod:`nasspeech.kernels.batchnorm`).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, dilation=1),
            DilConv(c_in, c_out, kernel, 1, padding, dilation=1, relu_inplace=True),
        )


class Conv7x1x1x7(ReLULed):
    """ReLU -> (1x7) conv -> (7x1) conv -> BN, stride on one axis each so shapes match."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            DenseConv2d(channels, channels, (1, 7), stride=(1, stride), padding=(0, 3)),
            DenseConv2d(channels, channels, (7, 1), stride=(stride, 1), padding=(3, 0)),
            nn.BatchNorm2d(channels),
        )


class AvgPool3x3(nn.AvgPool2d):
    """3x3 average pooling, padding excluded from the mean (``nn.AvgPool2d``'s parameters).

    On CPU it runs as a depthwise convolution with a ones kernel, scaled by the reciprocal
    window counts: oneDNN's pooling is several times slower than its depthwise convolution
    for the few channels of DARTS cells.
    """

    def __init__(self, stride: int = 1) -> None:
        super().__init__(3, stride=stride, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not fast_cpu_path(x) or x.dim() != 4:
            return super().forward(x)
        ones = torch.ones(x.shape[1], 1, 3, 3, dtype=x.dtype)
        y = depthwise_conv2d(x, ones, (self.stride, self.stride), (1, 1), (1, 1))
        # the number of in-image pixels under each window (a small H x W map)
        counts = F.conv2d(torch.ones(1, 1, *x.shape[-2:], dtype=x.dtype), ones[:1],
                          stride=self.stride, padding=1)
        return y.mul_(counts.reciprocal_())


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape (a mixed op skips it instead); ``stride``
    subsamples the last two axes (an image's)."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the spatial size with two offset 1x1 stride-2 convs, concatenated (DARTS).

    For odd sizes the offset path's output is zero-padded on the bottom/right (what a
    zero-padded input would give, as the convs have no bias), so both give ceil(H/2).
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.relu.inplace:
            return self._reduce(self.relu(x))
        return relu_then(x, self._reduce)

    def _reduce(self, x: torch.Tensor) -> torch.Tensor:
        w1 = self.conv_1.weight
        # conv_2 on x shifted by one pixel, as a 2x2 stride-2 kernel with only its bottom-right
        # tap: no slice (a slice's gradient comes back NCHW, and copying it is slow)
        w2 = F.pad(self.conv_2.weight, (1, 0, 1, 0))
        narrow = onednn_narrow_conv_hazard(x) and not torch.jit.is_tracing()  # no backward
        channels_last = narrow and not x.is_contiguous()
        if narrow:  # input and weights in plain strides: oneDNN takes its plain-layout kernel
            x, w1, w2 = plain_strides(x), plain_strides(w1), plain_strides(w2)
        a = F.conv2d(x, w1, None, 2)
        if x.shape[2] < 2 or x.shape[3] < 2:  # nothing left after the offset: zero padding
            x = F.pad(x, (0, 1, 0, 1))
        if torch.jit.is_tracing():  # export (ONNX/TorchScript) needs a kernel of static shape
            b = F.conv2d(x[:, :, 1:, 1:], self.conv_2.weight, None, 2)
        else:
            b = F.conv2d(x, w2, None, 2)
        dh, dw = a.shape[2] - b.shape[2], a.shape[3] - b.shape[3]
        if dh or dw:
            b = F.pad(b, (0, dw, 0, dh))
        if narrow:
            out = torch.cat([plain_grad(a), plain_grad(b)], dim=1)
            if channels_last:  # hand on the layout the cell runs in
                out = out.contiguous(memory_format=torch.channels_last)
            return self.bn(out)
        return self.bn(torch.cat([channels_last_grad(a), channels_last_grad(b)], dim=1))
