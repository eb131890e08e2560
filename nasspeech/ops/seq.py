"""Built-in ``seq`` candidate ops (emoDARTS Table 2): recurrent ops over the time axis.

Every op maps a batch-first sequence (B, T, C) -> (B, T, C) for any B >= 1, T >= 1, C >= 1,
returns a tensor (never a tuple) and treats every sample on its own (no batch statistics).

- ``lstm_k`` / ``rnn_k``: a *unidirectional* k-layer ``nn.LSTM`` / ``nn.RNN`` (tanh) with
  hidden size C, so the output already has width C (as in the emoDARTS reference code;
  unidirectional keeps the many ops a supernet instantiates lean).
- ``lstm_att_k`` / ``rnn_att_k``: a *bidirectional* k-layer LSTM / RNN (hidden C per
  direction), projected back to C by ``Linear(2C -> C)``, followed by multi-head scaled
  dot-product **self-attention over time** (every time step attends to all T steps of the
  same sample; ``nn.MultiheadAttention``, :func:`attention_heads` heads), added back as a
  residual and layer-normalised: ``LayerNorm(h + SelfAttention(h))`` with ``h`` the projection.
- ``skip_connect``: identity. ``none``: zeros (a mixed op skips it instead of computing it).

The recurrent modules are plain ``nn.LSTM`` / ``nn.RNN`` (no ``proj_size``, no dropout), which
is what the memory estimator models. Under bf16 autocast they run in fp32
(:func:`nasspeech.kernels.precision.full_precision`: cuDNN would run them in fp16).
"""

from __future__ import annotations

import torch
from torch import nn

from nasspeech.kernels.precision import at_least_fp32, full_precision
from nasspeech.ops.blocks import Zero
from nasspeech.registry import register_op

_RNN_CLASSES: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "rnn": nn.RNN}


def attention_heads(channels: int, min_head_width: int = 16) -> int:
    """Heads of the attention ops at width ``channels``: the largest of 8, 4, 2 that divides
    ``channels`` while keeping each head at least ``min_head_width`` wide, else 1."""
    for heads in (8, 4, 2):
        if channels % heads == 0 and channels // heads >= min_head_width:
            return heads
    return 1


class Recurrent(nn.Module):
    """(B, T, C) -> (B, T, C) through a unidirectional LSTM/RNN; returns the outputs only."""

    def __init__(self, kind: str, channels: int, layers: int) -> None:
        super().__init__()
        self.rnn = _RNN_CLASSES[kind](channels, channels, num_layers=layers, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with full_precision(x.device.type):
            return self.rnn(at_least_fp32(x))[0]


class RecurrentAttention(nn.Module):
    """Bidirectional LSTM/RNN -> Linear(2C -> C) -> LayerNorm(h + self-attention over time)."""

    def __init__(self, kind: str, channels: int, layers: int) -> None:
        super().__init__()
        self.rnn = _RNN_CLASSES[kind](
            channels, channels, num_layers=layers, batch_first=True, bidirectional=True
        )
        self.proj = nn.Linear(2 * channels, channels)
        self.attn = nn.MultiheadAttention(channels, attention_heads(channels), batch_first=True)
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with full_precision(x.device.type):
            h = self.rnn(at_least_fp32(x))[0]
        h = self.proj(h)
        context = self.attn(h, h, h, need_weights=False)[0]
        return self.norm(h + context)


def _recurrent_factory(kind: str, layers: int, attention: bool):
    cls = RecurrentAttention if attention else Recurrent

    def factory(channels: int, stride: int = 1) -> nn.Module:
        return cls(kind, channels, layers)

    factory.__name__ = f"{kind}{'_att' if attention else ''}_{layers}"
    factory.__qualname__ = factory.__name__
    return factory


def _describe(kind: str, layers: int, attention: bool) -> str:
    unit = "LSTM" if kind == "lstm" else "RNN"
    if attention:
        return f"{layers}-layer bidirectional {unit} projected to C, then self-attention over time."
    return f"{layers}-layer unidirectional {unit} (hidden C)."


def _register_recurrent() -> None:
    for kind in ("lstm", "rnn"):
        for layers in (1, 2, 3, 4):
            register_op(
                "seq", f"{kind}_{layers}",
                description=_describe(kind, layers, False), tags=("recurrent",),
            )(_recurrent_factory(kind, layers, attention=False))
        for layers in (1, 2):
            register_op(
                "seq", f"{kind}_att_{layers}",
                description=_describe(kind, layers, True), tags=("recurrent", "attention"),
            )(_recurrent_factory(kind, layers, attention=True))


_register_recurrent()


@register_op("seq", "skip_connect", parametric=False, identity=True, tags=("skip",))
def skip_connect(channels: int, stride: int = 1) -> nn.Module:
    """Identity."""
    return nn.Identity()


@register_op("seq", "none", parametric=False, is_zero=True)
def none(channels: int, stride: int = 1) -> nn.Module:
    """No connection (zero output); lets an edge be switched off."""
    return Zero()
