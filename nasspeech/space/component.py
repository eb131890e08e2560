"""Components: a stem plus a stack of cells over one op family.

:class:`SearchComponent` owns the component's alphas (one set per cell kind: ``normal`` and
``reduce`` for cnn, ``cell`` for seq: the family's cell kinds); :class:`DerivedComponent` is built from a genotype.
Both lay out cells the same way (:func:`cell_plan`), so a genotype derives the network it
was searched in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasspeech.registry import Family, get_family, get_op
from nasspeech.space.cells import DerivedCell, SearchCell, edge_count, node_softmax
from nasspeech.space.component_config import ComponentConfig
from nasspeech.space.plan import CellSlot, cell_plan, output_shape

__all__ = ["CellSlot", "DerivedComponent", "SearchComponent", "cell_plan", "output_shape"]


def _check_input(cfg: ComponentConfig, layout: Family, in_shape: tuple[int, ...]) -> None:
    if len(in_shape) != layout.rank:
        raise ValueError(
            f"component {cfg.name!r} ({cfg.family}) needs a rank-{layout.rank} input "
            f"(without batch), got shape {tuple(in_shape)}; choose a hand-over that produces it"
        )


class _Component(nn.Module):
    def __init__(self, cfg: ComponentConfig, in_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.cfg = cfg
        self.layout = get_family(cfg.family)
        _check_input(cfg, self.layout, in_shape)
        self.in_shape = tuple(in_shape)

    def _run_cells(self, x: torch.Tensor, weights: dict[str, torch.Tensor] | None,
                   edge_weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        s0 = s1 = self.stem(self.layout.prepare_input(x))
        for cell in self.cells:
            if weights is None:
                s0, s1 = s1, cell(s0, s1)
            else:
                s0, s1 = s1, cell(s0, s1, weights[cell.kind],
                                  edge_weights[cell.kind] if edge_weights else None)
        return s1


class SearchComponent(_Component):
    """A component of search cells, with its alphas as ``self.alphas[kind]`` (edges x ops)
    and, with edge normalisation (PC-DARTS), one beta per edge as ``self.betas[kind]``
    (empty without it)."""

    def __init__(self, cfg: ComponentConfig, in_shape: tuple[int, ...]) -> None:
        super().__init__(cfg, in_shape)
        ops = [get_op(cfg.family, name) for name in cfg.ops]
        stem_width, slots, out_channels = cell_plan(cfg, cfg.nodes)
        self.stem = self.layout.stem(self.in_shape, stem_width)
        cells = []
        for slot in slots:
            cell = SearchCell(
                self.layout, ops, cfg.nodes, slot.c_prev_prev, slot.c_prev, slot.width,
                slot.kind == "reduce", slot.reduction_prev, cfg.partial_channels,
                cfg.search_bn_affine,
            )
            cell.kind = slot.kind
            cells.append(cell)
        self.cells = nn.ModuleList(cells)
        self.out_shape = output_shape(cfg, self.in_shape, slots, out_channels)
        n_edges = edge_count(cfg.nodes)
        self.layout.prepare(self)
        self.alphas = nn.ParameterDict(
            {kind: nn.Parameter(1e-3 * torch.randn(n_edges, len(ops))) for kind in cfg.cell_kinds()}
        )
        # drawn after the alphas: without edge normalisation the random stream is unchanged
        self.betas = nn.ParameterDict(
            {kind: nn.Parameter(1e-3 * torch.randn(n_edges)) for kind in cfg.cell_kinds()}
            if cfg.uses_edge_normalization() else {}
        )

    def arch_parameters(self) -> list[nn.Parameter]:
        """The alphas, then the betas (if any), in cell-kind order."""
        return [*self.alphas.values(), *self.betas.values()]

    def edge_weights(self) -> dict[str, torch.Tensor] | None:
        """Per cell kind, each edge's share of its node (softmax of beta over the node's
        edges); None without edge normalisation."""
        if not len(self.betas):
            return None
        return {kind: node_softmax(beta, self.cfg.nodes) for kind, beta in self.betas.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = {kind: F.softmax(alpha, dim=-1) for kind, alpha in self.alphas.items()}
        return self._run_cells(x, weights, self.edge_weights())


class DerivedComponent(_Component):
    """A component of discrete cells from a genotype (cells/channels may differ from search)."""

    def __init__(
        self,
        cfg: ComponentConfig,
        in_shape: tuple[int, ...],
        cell_genotypes: dict[str, object],
        cells: int | None = None,
        channels: int | None = None,
    ) -> None:
        super().__init__(cfg, in_shape)
        concat_len = {kind: len(g.concat) for kind, g in cell_genotypes.items()}
        n_concat = max(concat_len.values())
        if len(set(concat_len.values())) > 1:
            raise ValueError(
                f"component {cfg.name!r}: cell kinds must concatenate the same number of nodes, "
                f"got {concat_len}"
            )
        stem_width, slots, out_channels = cell_plan(cfg, n_concat, cells, channels)
        self.stem = self.layout.stem(self.in_shape, stem_width)
        built = []
        for slot in slots:
            if slot.kind not in cell_genotypes:
                raise ValueError(
                    f"component {cfg.name!r}: genotype has no {slot.kind!r} cell "
                    f"(it has {sorted(cell_genotypes)})"
                )
            g = cell_genotypes[slot.kind]
            cell = DerivedCell(
                self.layout, [[(e.source, e.op) for e in node] for node in g.nodes], g.concat,
                slot.c_prev_prev, slot.c_prev, slot.width, slot.kind == "reduce",
                slot.reduction_prev,
            )
            cell.kind = slot.kind
            built.append(cell)
        self.cells = nn.ModuleList(built)
        self.out_shape = output_shape(cfg, self.in_shape, slots, out_channels)
        self.layout.prepare(self)

    def set_drop_path(self, prob: float) -> None:
        for cell in self.cells:
            cell.drop_prob = prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run_cells(x, None)
