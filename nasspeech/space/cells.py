"""DARTS DAG cells: the search cell (mixed ops on every edge) and the derived cell.

Nodes 0 and 1 are the cell inputs (outputs of the two previous cells); intermediate node
``j`` sums its incoming edges from all earlier nodes. The cell output concatenates the
intermediate nodes (then the family's ``combine`` step, e.g. a projection for ``seq``).
Edges are numbered node by node: node ``j`` owns ``2 + j`` consecutive edges.
"""

from __future__ import annotations

import torch
from torch import nn

from nasspeech.registry import Family, Operation, get_op
from nasspeech.registry.validation import name_failed_op
from nasspeech.space.mixed_op import MixedOp


def edge_count(nodes: int) -> int:
    return sum(2 + j for j in range(nodes))


def node_softmax(beta: torch.Tensor, nodes: int) -> torch.Tensor:
    """PC-DARTS edge normalisation: the softmax of ``beta`` (one value per edge, edges
    numbered node by node) over each node's incoming edges."""
    parts = torch.split(beta, [2 + j for j in range(nodes)], dim=-1)
    return torch.cat([torch.softmax(p, dim=-1) for p in parts], dim=-1)


class _CellIO(nn.Module):
    """Input preprocessing and output concatenation shared by both cell kinds."""

    def __init__(
        self,
        layout: Family,
        c_prev_prev: int,
        c_prev: int,
        width: int,
        reduction: bool,
        reduction_prev: bool,
        n_concat: int,
    ) -> None:
        super().__init__()
        self.layout = layout
        self.reduction = reduction
        self.width = width
        self.preprocess0 = layout.preprocess(c_prev_prev, width, reduction_prev)
        self.preprocess1 = layout.preprocess(c_prev, width, False)
        self.combine, self.out_channels = layout.combine(n_concat, width)

    def stride_for(self, source: int) -> int:
        return 2 if self.reduction and source < 2 else 1

    def finish(self, nodes: list[torch.Tensor]) -> torch.Tensor:
        # the concatenation's backward hands each node a strided channel slice
        nodes = [self.layout.keep_grad_layout(n) for n in nodes]
        return self.combine(torch.cat(nodes, dim=self.layout.channel_dim))


class SearchCell(_CellIO):
    """A cell whose every edge is a :class:`MixedOp` over the component's candidate ops."""

    def __init__(
        self,
        layout: Family,
        ops: list[Operation],
        nodes: int,
        c_prev_prev: int,
        c_prev: int,
        width: int,
        reduction: bool,
        reduction_prev: bool,
        partial_channels: int = 1,
        bn_affine: bool = False,
    ) -> None:
        super().__init__(layout, c_prev_prev, c_prev, width, reduction, reduction_prev, nodes)
        self.nodes = nodes
        self.edges = nn.ModuleList(
            MixedOp(ops, width, self.stride_for(source), layout, partial_channels, bn_affine)
            for j in range(nodes)
            for source in range(2 + j)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                edge_weights: torch.Tensor | None = None) -> torch.Tensor:
        """``weights``: softmax(alpha) per edge; ``edge_weights`` (PC-DARTS, optional): each
        edge's share of its node (:func:`node_softmax`), which scales the edge's output."""
        shares = [None] * len(self.edges) if edge_weights is None else edge_weights
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.nodes):
            node = sum(
                self.edges[offset + i](h, weights[offset + i], shares[offset + i])
                for i, h in enumerate(states)
            )
            offset += len(states)
            states.append(node)
        return self.finish(states[2:])


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples' paths with probability ``drop_prob`` (device-agnostic)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


class DerivedCell(_CellIO):
    """A discrete cell: each node keeps the edges (source, op) chosen by a genotype."""

    def __init__(
        self,
        layout: Family,
        node_edges: list[list[tuple[int, str]]],
        concat: list[int],
        c_prev_prev: int,
        c_prev: int,
        width: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__(
            layout, c_prev_prev, c_prev, width, reduction, reduction_prev, len(concat)
        )
        self.node_edges = [[src for src, _ in edges] for edges in node_edges]
        self.concat = list(concat)
        ops = []
        self.can_drop: list[bool] = []  # drop-path leaves identity edges alone (DARTS)
        self.op_labels: list[tuple[str, str]] = []  # (family/name, source): errors name the op
        for edges in node_edges:
            for source, name in edges:
                stride = self.stride_for(source)
                op = get_op(layout.name, name)
                ops.append(op.build(width, stride))
                self.can_drop.append(op.can_drop_path(stride))
                self.op_labels.append((op.key, op.source))
        self.ops = nn.ModuleList(ops)
        self.drop_prob = 0.0

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        k = 0
        for sources in self.node_edges:
            total: torch.Tensor | float = 0.0
            for source in sources:
                try:
                    h = self.ops[k](states[source])
                except Exception as exc:
                    name_failed_op(exc, *self.op_labels[k], states[source])
                    raise
                if self.training and self.drop_prob > 0 and self.can_drop[k]:
                    h = drop_path(h, self.drop_prob)
                total = total + h
                k += 1
            states.append(total)
        return self.finish([states[i] for i in self.concat])
