"""Family layouts: the structural pieces a cell needs that differ between ``cnn`` and ``seq``.

Search cells and derived cells share these, so both build the same network around the ops.
"""

from __future__ import annotations

import torch
from torch import nn

from nasspeech.ops.cnn import FactorizedReduce, Identity, ReLUConvBN
from nasspeech.ops.layout import channels_last_grad


class FamilyLayout:
    """Stem, input preprocessing and output handling of one op family."""

    family: str = ""
    channel_dim: int = 1
    input_rank: int = 0

    def stem(self, in_shape: tuple[int, ...], width: int) -> nn.Module:
        raise NotImplementedError

    def prepare(self, module: nn.Module) -> nn.Module:
        """Put a built component's parameters in the layout's preferred memory format."""
        return module

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def preprocess(self, c_in: int, c_out: int, reduced_prev: bool) -> nn.Module:
        raise NotImplementedError

    def combine(self, n_concat: int, width: int) -> tuple[nn.Module, int]:
        """Module applied to the concatenated nodes, and the cell's output width."""
        raise NotImplementedError

    def keep_grad_layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x``, with its gradient kept in the family's memory layout (identity here)."""
        return x

    def reduce_residual(self, channels: int) -> nn.Module:
        """PC-DARTS: how the channels a mixed op skips follow a stride-2 edge."""
        return nn.MaxPool2d(2, 2, ceil_mode=True)


class CnnLayout(FamilyLayout):
    """CNN cells run channels-last (NHWC): depthwise convolutions, the bulk of the DARTS ops,
    are several times faster that way on CPU (oneDNN) and no slower with cuDNN."""

    family = "cnn"
    channel_dim = 1
    input_rank = 3

    def prepare(self, module: nn.Module) -> nn.Module:
        return module.to(memory_format=torch.channels_last)

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)

    def stem(self, in_shape: tuple[int, ...], width: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(in_shape[0], width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        )

    def preprocess(self, c_in: int, c_out: int, reduced_prev: bool) -> nn.Module:
        if reduced_prev:
            return FactorizedReduce(c_in, c_out)
        return ReLUConvBN(c_in, c_out, 1, 1, 0)

    def combine(self, n_concat: int, width: int) -> tuple[nn.Module, int]:
        return Identity(), n_concat * width

    def keep_grad_layout(self, x: torch.Tensor) -> torch.Tensor:
        return channels_last_grad(x)


class SeqLayout(FamilyLayout):
    family = "seq"
    channel_dim = -1
    input_rank = 2

    def stem(self, in_shape: tuple[int, ...], width: int) -> nn.Module:
        return nn.Linear(in_shape[-1], width)

    def preprocess(self, c_in: int, c_out: int, reduced_prev: bool) -> nn.Module:
        return Identity() if c_in == c_out else nn.Linear(c_in, c_out)

    def combine(self, n_concat: int, width: int) -> tuple[nn.Module, int]:
        if n_concat == 1:
            return Identity(), width
        return nn.Linear(n_concat * width, width), width


LAYOUTS: dict[str, FamilyLayout] = {"cnn": CnnLayout(), "seq": SeqLayout()}


def layout_for(family: str) -> FamilyLayout:
    if family not in LAYOUTS:
        raise ValueError(
            f"family {family!r} has no cell layout; known: {', '.join(sorted(LAYOUTS))}"
        )
    return LAYOUTS[family]
