"""The ``cnn`` family: DARTS's image cells over (B, C, H=frequency, W=time)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from nasspeech.kernels.batchnorm import SearchBatchNorm2d
from nasspeech.kernels.layout import channels_last_grad
from nasspeech.ops.blocks import FactorizedReduce, ReLUConvBN
from nasspeech.registry.family import CellSlot, ComponentShape, Family


class CnnFamily(Family):
    """DARTS cells: normal and reduction cells (stride 2 halves H and W, doubles C).

    The cells run channels-last (NHWC): depthwise convolutions, the bulk of the DARTS ops,
    are several times faster that way on CPU (oneDNN) and no slower with cuDNN.
    """

    name = "cnn"
    rank = 3
    layout = "(B, C, H, W) -> (B, C, ceil(H/s), ceil(W/s))"
    channel_dim = 1
    strides = (1, 2)
    min_channels = 2  # a reduction splits the channels into two halves
    auxiliary = True
    handover_to: Mapping[str, str] = {
        "cnn": "identity", "seq": "fold_frequency", "head": "global_avg_pool"}
    handover_from_rank: Mapping[int, str] = {3: "identity", 2: "sequence_to_image"}

    # -- op contract -------------------------------------------------------------------
    def expected_shape(self, shape: tuple[int, ...], stride: int = 1) -> tuple[int, ...]:
        b, c, h, w = shape
        return (b, c, -(-h // stride), -(-w // stride))

    def probe_cases(self, channels: int = 4) -> list[tuple[tuple[int, ...], int]]:
        odd = channels + 1 if channels % 2 == 0 else channels
        return [((5, channels, 8, 8), 1), ((5, channels, 8, 8), 2),
                ((1, odd, 7, 5), 1), ((1, odd, 7, 5), 2)]

    # -- cell plan ---------------------------------------------------------------------
    def reduction_cells(self, cfg: ComponentShape) -> list[int]:
        if cfg.reductions is not None:
            return sorted(set(cfg.reductions))
        return sorted({cfg.cells // 3, 2 * cfg.cells // 3})

    def cell_kinds(self, cfg: ComponentShape) -> list[str]:
        reductions = self.reduction_cells(cfg)
        kinds = ["normal"] if len(reductions) < cfg.cells else []
        return kinds + (["reduce"] if reductions else [])

    def cell_plan(self, cfg: ComponentShape, n_concat: int, cells: int, channels: int,
                  ) -> tuple[int, list[CellSlot], int]:
        reductions = (self.reduction_cells(cfg) if cells == cfg.cells
                      else sorted({cells // 3, 2 * cells // 3}))
        stem = cfg.stem_multiplier * channels
        c_pp, c_p, width = stem, stem, channels
        slots, reduced_prev = [], False
        for i in range(cells):
            reduce = i in reductions
            if reduce:
                width *= 2
            slots.append(CellSlot(i, "reduce" if reduce else "normal", c_pp, c_p, width,
                                  reduced_prev))
            c_pp, c_p, reduced_prev = c_p, n_concat * width, reduce
        return stem, slots, c_p

    def output_shape(self, in_shape: tuple[int, ...], slots: list[CellSlot],
                     out_channels: int) -> tuple[int, ...]:
        _, h, w = in_shape
        for slot in slots:
            if slot.kind == "reduce":
                h, w = -(-h // 2), -(-w // 2)
        return (out_channels, h, w)

    # -- cell modules ------------------------------------------------------------------
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
        return nn.Identity(), n_concat * width

    def keep_grad_layout(self, x: torch.Tensor) -> torch.Tensor:
        return channels_last_grad(x)

    def reduce_residual(self, channels: int) -> nn.Module:
        return nn.MaxPool2d(2, 2, ceil_mode=True)

    def search_candidate(self, module: nn.Module, tags: tuple[str, ...], width: int
                         ) -> nn.Module:
        """Pooling ops get a parameter-free BatchNorm in search cells (DARTS)."""
        if "pool" in tags:
            return nn.Sequential(module, SearchBatchNorm2d(width))
        return module
