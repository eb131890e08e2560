"""The ``tdnn`` family: cells of 1-D convolutions over (batch, channels, time), registered
through nasspeech's public API only (family first, then its hand-overs and ops)."""

from __future__ import annotations

import torch
from torch import nn

from nasspeech import Family, register_family, register_handover, register_op
from nasspeech.registry import CellSlot


class TdnnFamily(Family):
    """Identical ``cell`` cells at one width over (B, C, T); time is never subsampled."""

    name = "tdnn"
    rank = 2
    layout = "(B, C, T) -> (B, C, T)"
    channel_dim = 1
    handover_to = {"head": "tdnn_mean_over_time"}
    handover_from_rank = {3: "tdnn_fold_frequency"}

    def probe_cases(self, channels: int = 4) -> list[tuple[tuple[int, ...], int]]:
        odd = channels + 1 if channels % 2 == 0 else channels
        return [((5, channels, 6), 1), ((1, odd, 3), 1)]

    def output_shape(self, in_shape: tuple[int, ...], slots: list[CellSlot],
                     out_channels: int) -> tuple[int, ...]:
        return (out_channels, in_shape[-1])

    def stem(self, in_shape: tuple[int, ...], width: int) -> nn.Module:
        return nn.Sequential(nn.Conv1d(in_shape[0], width, 1, bias=False), nn.BatchNorm1d(width))

    def preprocess(self, c_in: int, c_out: int, reduced_prev: bool) -> nn.Module:
        return nn.Identity() if c_in == c_out else nn.Conv1d(c_in, c_out, 1, bias=False)

    def combine(self, n_concat: int, width: int) -> tuple[nn.Module, int]:
        if n_concat == 1:
            return nn.Identity(), width
        return nn.Conv1d(n_concat * width, width, 1), width


register_family(TdnnFamily)


class FoldFrequency(nn.Module):
    """(B, C, F, T) -> (B, C*F, T): channels x frequency become the TDNN's channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape
        return x.reshape(b, c * f, t)


class MeanOverTime(nn.Module):
    """(B, C, T) -> (B, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=-1)


@register_handover("tdnn_fold_frequency")
def tdnn_fold_frequency(in_shape: tuple[int, ...]) -> nn.Module:
    """image (C, F, T) -> tdnn (C*F, T)."""
    if len(in_shape) != 3:
        raise ValueError(f"tdnn_fold_frequency needs a (C, F, T) input, got {in_shape}")
    return FoldFrequency()


@register_handover("tdnn_mean_over_time")
def tdnn_mean_over_time(in_shape: tuple[int, ...]) -> nn.Module:
    """tdnn (C, T) -> head: average over time."""
    if len(in_shape) != 2:
        raise ValueError(f"tdnn_mean_over_time needs a (C, T) input, got {in_shape}")
    return MeanOverTime()


class TdnnLayer(nn.Sequential):
    """ReLU -> dilated Conv1d (time kept) -> BatchNorm: one TDNN layer."""

    def __init__(self, channels: int, kernel: int, dilation: int) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel, padding=dilation * (kernel - 1) // 2,
                      dilation=dilation, bias=False),
            nn.BatchNorm1d(channels),
        )


class Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


@register_op("tdnn", "tdnn_3", tags=("conv",))
def tdnn_3(channels: int, stride: int = 1) -> nn.Module:
    """TDNN layer: context of 3 frames."""
    return TdnnLayer(channels, 3, 1)


@register_op("tdnn", "tdnn_3_d2", tags=("conv",))
def tdnn_3_d2(channels: int, stride: int = 1) -> nn.Module:
    """TDNN layer: 3 taps at dilation 2 (context of 5 frames)."""
    return TdnnLayer(channels, 3, 2)


@register_op("tdnn", "skip_connect", parametric=False, identity=True)
def skip_connect(channels: int, stride: int = 1) -> nn.Module:
    """Identity."""
    return nn.Identity()


@register_op("tdnn", "none", parametric=False, is_zero=True)
def none(channels: int, stride: int = 1) -> nn.Module:
    """No connection."""
    return Zero()
