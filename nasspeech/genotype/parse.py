"""From alphas to a genotype: the discrete cell a search cell's op weights choose."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nasspeech.genotype.cell import CellGenotype, Edge

__all__ = ["parse_cell"]


def parse_cell(weights: torch.Tensor, ops: Sequence[str], nodes: int, top_k: int,
               is_zero: Sequence[bool], edge_weights: torch.Tensor | None = None
               ) -> CellGenotype:
    """The cell that softmaxed alphas ``weights`` (edges x ops) choose: per node, the
    ``top_k`` incoming edges whose strongest op (other than the ``is_zero`` ones) is
    strongest, each with that op; ties go to the lower source index.

    ``edge_weights`` (PC-DARTS edge normalisation: each edge's share of its node) scale the
    edges' strengths, so an edge is ranked by share x its strongest op's weight; the op of
    a kept edge does not depend on them."""
    usable = [i for i, zero in enumerate(is_zero) if not zero]
    chosen, start = [], 0
    for j in range(nodes):
        n_in = 2 + j
        w = weights[start : start + n_in][:, usable]
        best_val, best_idx = w.max(dim=1)
        if edge_weights is not None:
            best_val = best_val * edge_weights[start : start + n_in]
        # stable order: strongest first, ties broken by the lower source index
        order = sorted(range(n_in), key=lambda i: (-float(best_val[i]), i))[:top_k]
        chosen.append(
            [Edge(source=i, op=ops[usable[int(best_idx[i])]]) for i in sorted(order)]
        )
        start += n_in
    return CellGenotype(nodes=chosen, concat=list(range(2, 2 + nodes)))
