"""The ``seq`` family: cells of sequence ops over batch-first (B, T, C) sequences."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from nasspeech.registry.family import CellSlot, Family


class SeqFamily(Family):
    """Identical ``cell`` cells at one width; node outputs are projected back to it."""

    name = "seq"
    rank = 2
    layout = "(B, T, C) -> (B, T, C)"
    channel_dim = -1
    handover_to: Mapping[str, str] = {
        "seq": "identity", "cnn": "sequence_to_image", "head": "mean_over_time"}
    handover_from_rank: Mapping[int, str] = {2: "identity", 3: "fold_frequency"}

    def probe_cases(self, channels: int = 4) -> list[tuple[tuple[int, ...], int]]:
        odd = channels + 1 if channels % 2 == 0 else channels
        return [((5, 5, channels), 1), ((1, 3, odd), 1)]

    def output_shape(self, in_shape: tuple[int, ...], slots: list[CellSlot],
                     out_channels: int) -> tuple[int, ...]:
        return (in_shape[0], out_channels)

    def stem(self, in_shape: tuple[int, ...], width: int) -> nn.Module:
        return nn.Linear(in_shape[-1], width)

    def preprocess(self, c_in: int, c_out: int, reduced_prev: bool) -> nn.Module:
        return nn.Identity() if c_in == c_out else nn.Linear(c_in, c_out)

    def combine(self, n_concat: int, width: int) -> tuple[nn.Module, int]:
        if n_concat == 1:
            return nn.Identity(), width
        return nn.Linear(n_concat * width, width), width
