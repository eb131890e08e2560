"""The emoDARTS baselines (paper Section 4.2, Fig. 4): CNN, CNN+LSTM, CNN+LSTM attention.

All three share the paper's front end: ``Conv2d(k=2, s=2, p=2) -> ReLU -> MaxPool2d(2, 2)``.

- ``cnn``: ``-> Dropout(0.3) -> Flatten -> Linear(-> 32) -> ReLU -> Linear(32 -> classes)``.
  With 1 conv channel on 1x128x128 inputs: 128 -> conv 66 -> pool 33, 33*33 = 1089 features,
  5 + (1089*32 + 32) + (32*4 + 4) = **35,017** parameters (the paper's "35K", Table 3).
- ``cnn_lstm``: the pooled map (B, C, F', T') is read as a sequence over the *time* axis,
  (B, T', C*F'), through a bidirectional ``nn.LSTM`` (128 units per direction, batch_first),
  summarised over time per sample (``time_pooling="mean"``, the default, or ``"last"``: the
  final forward and backward hidden states), then ``Dropout(0.3) -> dense -> dense``.
- ``cnn_lstm_att``: as ``cnn_lstm`` with additive attention pooling over time instead of the
  mean: ``e_t = v^T tanh(W h_t + b)``, ``a = softmax_t(e)`` per sample, ``c = sum_t a_t h_t``.

Every model returns logits (B, classes): no softmax inside. The paper's softmax layer is the
softmax over the class axis taken by ``CrossEntropyLoss`` and at prediction time. Each sample
is processed on its own (no batch statistics), so any batch size >= 1 works and outputs are
permutation-equivariant over the batch; any input size (C, F, T) works.
"""

from __future__ import annotations

import torch
from torch import nn

from nasspeech.baselines.registry import check_input_shape, register_baseline

_TIME_POOLING = ("mean", "last")


def _out_size(n: int, kernel: int, stride: int, padding: int = 0) -> int:
    return (n + 2 * padding - kernel) // stride + 1


class ConvFrontEnd(nn.Module):
    """Conv2d(in -> channels, k=2, s=2, p=2) -> ReLU -> MaxPool2d(2, 2): (B, C, F, T) ->
    (B, channels, F', T')."""

    def __init__(self, input_shape: tuple[int, int, int], channels: int = 1) -> None:
        super().__init__()
        self.input_shape = check_input_shape(input_shape)
        _, f, t = self.input_shape
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"conv_channels must be a positive int, got {channels!r}")
        self.conv = nn.Conv2d(self.input_shape[0], channels, kernel_size=2, stride=2, padding=2)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2, 2)
        # conv output >= 2 for any size >= 1 (padding 2), so the pooled map is never empty
        f, t = (_out_size(_out_size(n, 2, 2, 2), 2, 2) for n in (f, t))
        self.output_shape = (channels, f, t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"expected input (B, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(x.shape)}")
        return self.pool(self.act(self.conv(x)))


def _head(in_features: int, hidden: int, num_classes: int, dropout: float) -> nn.Sequential:
    """Dropout -> Linear(-> hidden) -> ReLU -> Linear(hidden -> classes): the paper's two dense
    layers after a 0.3 dropout."""
    if not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"hidden must be a positive int, got {hidden!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, hidden), nn.ReLU(),
                         nn.Linear(hidden, num_classes))


@register_baseline("cnn")
class CNNBaseline(nn.Module):
    """Conv -> ReLU -> max-pool -> dropout -> dense(hidden) -> dense(classes)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, conv_channels: int = 1,
                 hidden: int = 32, dropout: float = 0.3) -> None:
        super().__init__()
        self.features = ConvFrontEnd(check_input_shape(input_shape), conv_channels)
        c, f, t = self.features.output_shape
        self.head = _head(c * f * t, hidden, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class AttentionPool(nn.Module):
    """Additive attention pooling over time: (B, T, D) -> (B, D), weights softmaxed over T
    separately for every sample."""

    def __init__(self, dim: int, attention_dim: int = 128) -> None:
        super().__init__()
        if not isinstance(attention_dim, int) or attention_dim < 1:
            raise ValueError(f"attention_dim must be a positive int, got {attention_dim!r}")
        self.proj = nn.Linear(dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1, bias=False)

    def weights(self, h: torch.Tensor) -> torch.Tensor:
        """Attention weights (B, T); each row sums to 1."""
        return torch.softmax(self.score(torch.tanh(self.proj(h))).squeeze(-1), dim=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bt,btd->bd", self.weights(h), h)


class CNNLSTMBaseline(nn.Module):
    """Conv front end -> BiLSTM over time -> mean (or last state) -> dropout -> dense -> dense.

    ``attention=True`` (the ``cnn_lstm_att`` baseline) pools the LSTM outputs with
    :class:`AttentionPool` instead."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, conv_channels: int = 1,
                 lstm_units: int = 128, hidden: int = 32, dropout: float = 0.3,
                 time_pooling: str = "mean", attention: bool = False,
                 attention_dim: int = 128) -> None:
        super().__init__()
        if not isinstance(lstm_units, int) or lstm_units < 1:
            raise ValueError(f"lstm_units must be a positive int, got {lstm_units!r}")
        if time_pooling not in _TIME_POOLING:
            raise ValueError(f"time_pooling must be one of {_TIME_POOLING}, got {time_pooling!r}")
        self.features = ConvFrontEnd(check_input_shape(input_shape), conv_channels)
        c, f, _ = self.features.output_shape
        self.lstm = nn.LSTM(c * f, lstm_units, batch_first=True, bidirectional=True)
        self.time_pooling = time_pooling
        self.attention = AttentionPool(2 * lstm_units, attention_dim) if attention else None
        self.head = _head(2 * lstm_units, hidden, num_classes, dropout)

    def sequence(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, F, T) -> pooled map as a per-sample sequence over time (B, T', C*F')."""
        z = self.features(x)
        return z.permute(0, 3, 1, 2).flatten(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, (h_n, _) = self.lstm(self.sequence(x))
        if self.attention is not None:
            summary = self.attention(out)
        elif self.time_pooling == "mean":
            summary = out.mean(dim=1)
        else:  # last: final forward state (end of sequence) and final backward state (start)
            summary = torch.cat([h_n[-2], h_n[-1]], dim=1)
        return self.head(summary)


@register_baseline("cnn_lstm")
def cnn_lstm(input_shape: tuple[int, ...], num_classes: int, conv_channels: int = 1,
             lstm_units: int = 128, hidden: int = 32, dropout: float = 0.3,
             time_pooling: str = "mean") -> CNNLSTMBaseline:
    """CNN+LSTM: a bidirectional LSTM over time after the pooling, summarised by
    ``time_pooling`` ("mean" over time, or the "last" forward/backward states)."""
    return CNNLSTMBaseline(input_shape, num_classes, conv_channels=conv_channels,
                           lstm_units=lstm_units, hidden=hidden, dropout=dropout,
                           time_pooling=time_pooling)


@register_baseline("cnn_lstm_att")
def cnn_lstm_att(input_shape: tuple[int, ...], num_classes: int, conv_channels: int = 1,
                 lstm_units: int = 128, hidden: int = 32, dropout: float = 0.3,
                 attention_dim: int = 128) -> CNNLSTMBaseline:
    """CNN+LSTM with additive attention pooling over time (paper Fig. 4)."""
    return CNNLSTMBaseline(input_shape, num_classes, conv_channels=conv_channels,
                           lstm_units=lstm_units, hidden=hidden, dropout=dropout,
                           attention=True, attention_dim=attention_dim)
