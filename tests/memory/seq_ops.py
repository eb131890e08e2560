"""Stand-in recurrent ops for the memory tests (registered under ``memtest_*`` names so they
never clash with the built-in ``seq`` ops)."""

from __future__ import annotations

import torch
from torch import nn

from nasspeech.registry import REGISTRY, register_op


class Recurrent(nn.Module):
    """(B, T, C) -> (B, T, C) through an LSTM/RNN; returns the output sequence only."""

    def __init__(self, kind: str, channels: int, layers: int, attention: bool = False) -> None:
        super().__init__()
        cls = nn.LSTM if kind == "lstm" else nn.RNN
        self.rnn = cls(channels, channels, num_layers=layers, batch_first=True)
        self.score = nn.Linear(channels, 1) if attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.rnn(x)[0]
        if self.score is not None:
            weights = torch.softmax(self.score(out), dim=1)
            out = out * weights
        return out


def _factory(kind: str, layers: int, attention: bool = False):
    def build(channels: int, stride: int = 1) -> nn.Module:
        return Recurrent(kind, channels, layers, attention)

    return build


def register() -> None:
    specs = {
        "memtest_lstm_1": ("lstm", 1, False), "memtest_lstm_2": ("lstm", 2, False),
        "memtest_rnn_1": ("rnn", 1, False), "memtest_lstm_att_1": ("lstm", 1, True),
    }
    names = set(REGISTRY.names("seq")) if "seq" in REGISTRY.families() else set()
    for name, (kind, layers, att) in specs.items():
        if name not in names:
            register_op("seq", name, tags=("recurrent",))(_factory(kind, layers, att))
    if "memtest_skip" not in names:
        register_op("seq", "memtest_skip", parametric=False, tags=("skip",))(
            lambda channels, stride=1: nn.Identity()
        )
