"""``seq`` ops of the nasspeech-seqplus plugin: ``gru_1``, ``gru_2`` and ``transformer_1``.

Each maps a batch-first sequence (B, T, C) -> (B, T, C) for any B, T, C >= 1 and returns a
tensor. Importing this module registers them (nasspeech does so through the entry point).
"""

from __future__ import annotations

import torch
from torch import nn

from nasspeech import register_op


def heads_for(channels: int, min_head_width: int = 16) -> int:
    """The largest of 8, 4, 2 heads dividing ``channels`` with heads at least
    ``min_head_width`` wide, else 1 (so any width works)."""
    for heads in (8, 4, 2):
        if channels % heads == 0 and channels // heads >= min_head_width:
            return heads
    return 1


class GRU(nn.Module):
    """A unidirectional ``layers``-layer GRU with hidden size C; returns the outputs only."""

    def __init__(self, channels: int, layers: int) -> None:
        super().__init__()
        self.gru = nn.GRU(channels, channels, num_layers=layers, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0]


@register_op("seq", "gru_1", tags=("recurrent",))
def gru_1(channels: int, stride: int = 1) -> nn.Module:
    """1-layer unidirectional GRU (hidden C)."""
    return GRU(channels, 1)


@register_op("seq", "gru_2", tags=("recurrent",))
def gru_2(channels: int, stride: int = 1) -> nn.Module:
    """2-layer unidirectional GRU (hidden C)."""
    return GRU(channels, 2)


@register_op("seq", "transformer_1", tags=("attention",))
def transformer_1(channels: int, stride: int = 1) -> nn.Module:
    """1-layer pre-norm transformer encoder over time (self-attention + 2C feed-forward)."""
    return nn.TransformerEncoderLayer(
        d_model=channels,
        nhead=heads_for(channels),
        dim_feedforward=2 * channels,
        dropout=0.0,
        batch_first=True,
        norm_first=True,
    )
