"""DARTS's auxiliary classifier: a second head at 2/3 depth of a cnn component, whose loss
(weighted, DARTS: 0.4) is added to the main loss while retraining; unused at test time."""

from __future__ import annotations

import torch
from torch import nn

#: Smallest feature map the head takes: a 5x5 stride-3 pool, then a 2x2 convolution.
MIN_SIZE = 8


class AuxiliaryHead(nn.Module):
    """ReLU, 5x5 average pool (stride 3), 1x1 conv to 128, BN, ReLU, 2x2 conv to 768, BN,
    ReLU, linear: DARTS's ``AuxiliaryHeadCIFAR`` for 8x8 maps. Larger maps are averaged
    after the last convolution; the first ReLU is not in place (it would change the cell
    output that the next cells read)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))
