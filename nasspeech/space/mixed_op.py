"""The mixed op of a search cell: a softmax(alpha)-weighted sum over candidate ops."""

from __future__ import annotations

import torch
from torch import nn

from nasspeech.kernels.batchnorm import SearchBatchNorm2d, use_search_batchnorm
from nasspeech.kernels.precision import autocast_dtype
from nasspeech.kernels.relu import relu_then
from nasspeech.ops.blocks import ReLULed
from nasspeech.registry import Family, Operation
from nasspeech.registry.validation import name_failed_op


def split_leading_relu(module: nn.Module) -> nn.Module | None:
    """If ``module`` starts with an out-of-place ReLU (possibly nested in Sequentials), return
    a Sequential of the rest, sharing its sub-modules; otherwise None."""
    if not isinstance(module, nn.Sequential) or len(module) == 0:
        return None
    first = module[0]
    if isinstance(first, nn.ReLU) and not first.inplace:
        rest = list(module)[1:]
    else:
        inner = split_leading_relu(first)
        if inner is None:
            return None
        rest = [inner, *list(module)[1:]]
    return nn.Sequential(*rest)


def split_trailing_batchnorm(module: nn.Module | None
                             ) -> tuple[nn.Module, SearchBatchNorm2d] | None:
    """If ``module`` ends with a :class:`SearchBatchNorm2d` (possibly nested in Sequentials),
    return ``(rest, bn)``, ``rest`` sharing its sub-modules and computing what ``module`` does
    before ``bn``; otherwise None."""
    if not isinstance(module, nn.Sequential) or len(module) == 0:
        return None
    *rest, last = list(module)
    if isinstance(last, SearchBatchNorm2d):
        bn = last
    else:
        inner = split_trailing_batchnorm(last)
        if inner is None:
            return None
        rest, bn = [*rest, inner[0]], inner[1]
    if isinstance(module, ReLULed):  # keeps its ReLU's output out of the saved tensors
        return ReLULed(*rest), bn
    if type(module) is nn.Sequential:
        return nn.Sequential(*rest), bn
    return None


def channel_shuffle(x: torch.Tensor, groups: int, dim: int) -> torch.Tensor:
    """Interleave ``groups`` channel groups along ``dim`` (PC-DARTS)."""
    dim = dim % x.dim()
    size = x.shape[dim]
    shape = list(x.shape)
    x = x.reshape(*shape[:dim], groups, size // groups, *shape[dim + 1 :])
    return x.transpose(dim, dim + 1).reshape(shape)


class MixedOp(nn.Module):
    """All candidate ops of one edge.

    ``none`` (``is_zero``) ops are never computed: they contribute zero to the sum but keep
    their softmax weight, which is what multiplying their zero output would give, without the
    work and memory. The family may wrap a candidate (pool ops in cnn cells get a
    parameter-free BatchNorm, as in DARTS), and
    the BatchNorms inside the candidate ops lose their affine parameters too (as in DARTS;
    ``bn_affine=True`` keeps them); parameter-free BatchNorms keep their output instead of
    their input for the backward pass (:mod:`nasspeech.kernels.batchnorm`).
    With ``partial_channels=K`` only 1/K of the channels pass through the ops (PC-DARTS).

    Ops that begin with a ReLU (all DARTS convolutions) share one ReLU of the edge input
    instead of computing and storing it once each; the weighted sum is accumulated with
    ``addcmul`` (one kernel, no separate product tensor), and where an op ends with a
    parameter-free BatchNorm, that BatchNorm and the op's term of the sum are one autograd
    node (:meth:`SearchBatchNorm2d.weighted_sum`).
    """

    def __init__(
        self,
        ops: list[Operation],
        channels: int,
        stride: int,
        layout: Family,
        partial_channels: int = 1,
        bn_affine: bool = False,
    ) -> None:
        super().__init__()
        self.layout = layout
        self.partial = partial_channels
        width = channels // partial_channels
        self.op_index: list[int] = []
        self.op_labels: list[tuple[str, str]] = []  # (family/name, source): errors name the op
        modules = []
        for i, op in enumerate(ops):
            if op.is_zero:
                continue
            module = op.build(width, stride)
            module = layout.search_candidate(module, op.tags, width)
            if not bn_affine:
                module = use_search_batchnorm(module)
            modules.append(module)
            self.op_index.append(i)
            self.op_labels.append((op.key, op.source))
        self.ops = nn.ModuleList(modules)
        # bodies after the shared ReLU; plain list: they share parameters with self.ops
        self._after_relu: list[nn.Module | None] = [split_leading_relu(m) for m in modules]
        # (body before its final BatchNorm, that BatchNorm), of the op or of its after-ReLU body
        self._bn_tail = [split_trailing_batchnorm(body if body is not None else m)
                         for m, body in zip(modules, self._after_relu)]
        self.skip_path = (
            layout.reduce_residual(channels - width)
            if partial_channels > 1 and stride == 2
            else None
        )

    def forward(self, x: torch.Tensor, weights: torch.Tensor,
                edge_weight: torch.Tensor | None = None) -> torch.Tensor | float:
        """``weights``: one per op (softmax of the edge's alphas). ``edge_weight`` (PC-DARTS
        edge normalisation): the edge's share of its node, scaling the whole output; it is
        folded into the op weights and the bypassed channels, so no full-width product is
        kept for the backward pass."""
        dim = self.layout.channel_dim
        if edge_weight is not None:
            weights = weights * edge_weight
        if self.partial > 1:
            width = x.shape[dim] // self.partial
            x, rest = torch.split(x, [width, x.shape[dim] - width], dim=dim)
        if any(body is not None for body in self._after_relu):
            out = relu_then(x, lambda relu_x: self._weighted_sum(x, relu_x, weights))
        else:
            out = self._weighted_sum(x, None, weights)
        if self.partial > 1:
            if self.skip_path is not None:
                rest = self.skip_path(rest)
            if edge_weight is not None:
                rest = rest * edge_weight
            out = channel_shuffle(torch.cat([out, rest], dim=dim), self.partial, dim)
        return out

    def _weighted_sum(self, x: torch.Tensor, relu_x: torch.Tensor | None,
                      weights: torch.Tensor) -> torch.Tensor:
        """sum_i weights[i] * op_i(x); ops that begin with a ReLU get ``relu_x``. Under bf16
        autocast the sum is taken in bf16."""
        out: torch.Tensor | None = None
        low = autocast_dtype(x.device.type)
        for k, (i, op, body) in enumerate(zip(self.op_index, self.ops, self._after_relu)):
            try:
                tail = self._bn_tail[k] if low is None else None  # fused: fp32 only
                if tail is not None:
                    z = tail[0](relu_x if body is not None else x)
                    out = tail[1].weighted_sum(out, z, weights[i])
                    continue
                y, w = body(relu_x) if body is not None else op(x), weights[i]
                if low is not None:
                    y, w = y.to(low), w.to(low)
                out = w * y if out is None else torch.addcmul(out, w, y)
            except Exception as exc:
                name_failed_op(exc, *self.op_labels[k], x)
                raise
        assert out is not None, "a mixed op has at least one op other than 'none'"
        return out
