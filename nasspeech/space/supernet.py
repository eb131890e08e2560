"""The supernet: every candidate op on every edge, alphas kept apart from the weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nasspeech.genotype import CellGenotype, ComponentGenotype, Edge, Genotype
from nasspeech.registry import REGISTRY
from nasspeech.space.component import SearchComponent
from nasspeech.space.config import ComponentConfig, SearchSpace
from nasspeech.space.network import ComponentChain


class Supernet(ComponentChain):
    """The continuous relaxation of a :class:`SearchSpace`."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space, SearchComponent)

    def alpha_parameters(self) -> list[torch.nn.Parameter]:
        """The architecture parameters (alphas) of every component, in a fixed order."""
        return [a for comp in self.components.values() for a in comp.alphas.values()]

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

    def alpha_softmax(self) -> dict[str, torch.Tensor]:
        return {k: F.softmax(a.detach(), dim=-1).cpu() for k, a in self.named_alphas().items()}

    def genotype(self) -> Genotype:
        """Per node, the top-k incoming edges (k = the component's ``top_k``), each with its
        strongest op other than ``none``."""
        comps = []
        for name, comp in self.components.items():
            cfg: ComponentConfig = comp.cfg
            cells = {
                kind: _parse_cell(F.softmax(alpha.detach(), dim=-1).cpu(), cfg)
                for kind, alpha in comp.alphas.items()
            }
            comps.append(ComponentGenotype(name=name, family=cfg.family, cells=cells))
        return Genotype(space=self.space.name, components=comps)


def _parse_cell(weights: torch.Tensor, cfg: ComponentConfig) -> CellGenotype:
    ops = cfg.ops
    usable = [i for i, name in enumerate(ops) if not REGISTRY.get(cfg.family, name).is_zero]
    nodes, start = [], 0
    for j in range(cfg.nodes):
        n_in = 2 + j
        w = weights[start : start + n_in][:, usable]
        best_val, best_idx = w.max(dim=1)
        # stable order: strongest first, ties broken by the lower source index
        order = sorted(range(n_in), key=lambda i: (-float(best_val[i]), i))[: cfg.top_k]
        nodes.append(
            [Edge(source=i, op=ops[usable[int(best_idx[i])]]) for i in sorted(order)]
        )
        start += n_in
    return CellGenotype(nodes=nodes, concat=list(range(2, 2 + cfg.nodes)))
