"""Built-in ``cnn`` candidate ops, following the DARTS definitions (ReLU -> conv -> BN).

Every op maps (B, C, H, W) -> (B, C, ceil(H/s), ceil(W/s)) for stride s in {1, 2}; the
modules are in :mod:`nasspeech.ops.blocks`. Importing this module registers the ops.
"""

from __future__ import annotations

from torch import nn

from nasspeech.kernels.onednn import onednn_narrow_conv_hazard
from nasspeech.kernels.pooling import MaxPool3x3
from nasspeech.ops.blocks import (
    AvgPool3x3,
    Conv7x1x1x7,
    DilConv,
    FactorizedReduce,
    ReLUConvBN,
    SepConv,
    Zero,
)
from nasspeech.registry import register_op

# the blocks stay importable from here (their home before nasspeech.ops.blocks)
__all__ = ["AvgPool3x3", "Conv7x1x1x7", "DilConv", "FactorizedReduce", "ReLUConvBN", "SepConv",
           "Zero", "onednn_narrow_conv_hazard"]


@register_op("cnn", "none", parametric=False, is_zero=True)
def none(channels: int, stride: int = 1) -> nn.Module:
    """No connection (zero output); lets an edge be switched off."""
    return Zero(stride)


@register_op("cnn", "skip_connect", parametric=False, identity=True, tags=("skip",))
def skip_connect(channels: int, stride: int = 1) -> nn.Module:
    """Identity; factorized reduce at stride 2."""
    return nn.Identity() if stride == 1 else FactorizedReduce(channels, channels)


@register_op("cnn", "max_pool_3x3", parametric=False, tags=("pool",))
def max_pool_3x3(channels: int, stride: int = 1) -> nn.Module:
    """3x3 max pooling (compiled CPU kernels with a uint8 argmax: :mod:`nasspeech.kernels.pooling`)."""
    return MaxPool3x3(stride)


@register_op("cnn", "avg_pool_3x3", parametric=False, tags=("pool",))
def avg_pool_3x3(channels: int, stride: int = 1) -> nn.Module:
    """3x3 average pooling (padding excluded from the mean)."""
    return AvgPool3x3(stride)


@register_op("cnn", "sep_conv_3x3", tags=("conv",))
def sep_conv_3x3(channels: int, stride: int = 1) -> nn.Module:
    """3x3 separable conv, applied twice."""
    return SepConv(channels, channels, 3, stride, 1)


@register_op("cnn", "sep_conv_5x5", tags=("conv",))
def sep_conv_5x5(channels: int, stride: int = 1) -> nn.Module:
    """5x5 separable conv, applied twice."""
    return SepConv(channels, channels, 5, stride, 2)


@register_op("cnn", "dil_conv_3x3", tags=("conv",))
def dil_conv_3x3(channels: int, stride: int = 1) -> nn.Module:
    """3x3 depthwise-separable conv with dilation 2."""
    return DilConv(channels, channels, 3, stride, 2, dilation=2)


@register_op("cnn", "dil_conv_5x5", tags=("conv",))
def dil_conv_5x5(channels: int, stride: int = 1) -> nn.Module:
    """5x5 depthwise-separable conv with dilation 2."""
    return DilConv(channels, channels, 5, stride, 4, dilation=2)


@register_op("cnn", "conv_7x1_1x7", tags=("conv",))
def conv_7x1_1x7(channels: int, stride: int = 1) -> nn.Module:
    """1x7 then 7x1 convolution."""
    return Conv7x1x1x7(channels, stride)
