"""The supernet: every candidate op on every edge, alphas kept apart from the weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nasspeech.genotype import ComponentGenotype, Genotype, parse_cell
from nasspeech.registry import get_op
from nasspeech.space.component import SearchComponent
from nasspeech.space.component_chain import ComponentChain
from nasspeech.space.component_config import ComponentConfig, SpaceSpec


class Supernet(ComponentChain):
    """The continuous relaxation of a :class:`SearchSpace`."""

    def __init__(self, space: SpaceSpec) -> None:
        super().__init__(space, SearchComponent)

    def alpha_parameters(self) -> list[torch.nn.Parameter]:
        """The architecture parameters of every component, in a fixed order: its alphas, then
        its PC-DARTS edge weights (betas) where edge normalisation is on."""
        return [a for comp in self.components.values() for a in comp.arch_parameters()]

    def named_alphas(self) -> dict[str, torch.nn.Parameter]:
        return {
            f"{name}.{kind}": a
            for name, comp in self.components.items()
            for kind, a in comp.alphas.items()
        }

    def weight_parameters(self) -> list[torch.nn.Parameter]:
        """Every parameter that is not an alpha."""
        alpha_ids = {id(a) for a in self.alpha_parameters()}
        return [p for p in self.parameters() if id(p) not in alpha_ids]

    def named_betas(self) -> dict[str, torch.nn.Parameter]:
        """The PC-DARTS edge weights, ``{"cnn.normal": beta, ...}`` (one value per edge); only
        components with edge normalisation have them."""
        return {
            f"{name}.{kind}": b
            for name, comp in self.components.items()
            for kind, b in comp.betas.items()
        }

    def alpha_softmax(self) -> dict[str, torch.Tensor]:
        return {k: F.softmax(a.detach(), dim=-1).cpu() for k, a in self.named_alphas().items()}

    @torch.no_grad()
    def beta_softmax(self) -> dict[str, torch.Tensor]:
        """Per alpha set with edge normalisation: each edge's share of its node."""
        return {
            f"{name}.{kind}": w.detach().cpu()
            for name, comp in self.components.items()
            for kind, w in (comp.edge_weights() or {}).items()
        }

    def genotype(self) -> Genotype:
        """Per node, the top-k incoming edges (k = the component's ``top_k``), each with its
        strongest op other than ``none``; with edge normalisation an edge's strength is its
        share of the node times that op's weight (PC-DARTS)."""
        comps, edge_weights = [], self.beta_softmax()
        for name, comp in self.components.items():
            cfg: ComponentConfig = comp.cfg
            cells = {
                kind: parse_cell(F.softmax(alpha.detach(), dim=-1).cpu(), cfg.ops, cfg.nodes,
                                 cfg.top_k, [get_op(cfg.family, n).is_zero for n in cfg.ops],
                                 edge_weights.get(f"{name}.{kind}"))
                for kind, alpha in comp.alphas.items()
            }
            comps.append(ComponentGenotype(name=name, family=cfg.family, cells=cells))
        return Genotype(space=self.space.name, components=comps)
