"""Which op of a derived model keeps it from exporting.

When a whole-model export fails (or its outputs differ from PyTorch's), every distinct op of
the genotype is exported alone, on the input it saw inside the model, and checked the same
way. The first one that fails is named with its family, name and source (the plugin).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nasspeech.genotype import Genotype
from nasspeech.registry import Operation, get_op


@dataclass
class OpSite:
    """One op module of a derived model and where it sits."""

    op: Operation
    where: str  # e.g. "component 'seq', cell 0 (cell), node 2"
    module: nn.Module


def op_sites(model: nn.Module, genotype: Genotype) -> list[OpSite]:
    """Every op module of a :class:`~nasspeech.space.derived.DerivedModel`, in cell order."""
    sites = []
    for comp in genotype.components:
        for i, cell in enumerate(model.components[comp.name].cells):
            edges = [(j + 2, e.op) for j, node in enumerate(comp.cells[cell.kind].nodes)
                     for e in node]
            for (node, name), module in zip(edges, cell.ops):
                sites.append(OpSite(get_op(comp.family, name),
                                    f"component {comp.name!r}, cell {i} ({cell.kind}), "
                                    f"node {node}", module))
    return sites


def inputs_of(model: nn.Module, sites: list[OpSite], x: torch.Tensor) -> dict[int, torch.Tensor]:
    """The input each site's module receives when ``model`` runs on ``x`` (by site index)."""
    seen: dict[int, torch.Tensor] = {}
    handles = []
    for k, site in enumerate(sites):
        def hook(module: nn.Module, args: tuple, k: int = k) -> None:
            seen.setdefault(k, args[0].detach().clone())
        handles.append(site.module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def find_culprit(model: nn.Module, genotype: Genotype, x: torch.Tensor,
                 check: Callable[[nn.Module, torch.Tensor], str | None]) -> str | None:
    """``"op FAMILY/NAME (source ...) at WHERE: REASON"`` for the first distinct op that
    ``check(module, input)`` rejects (it returns a reason, or None when the op passes)."""
    sites = op_sites(model, genotype)
    inputs = inputs_of(model, sites, x)
    done: set[str] = set()
    for k, site in enumerate(sites):
        if site.op.key in done or k not in inputs:
            continue
        done.add(site.op.key)
        reason = check(site.module, inputs[k])
        if reason is not None:
            return f"op {site.op.key} (source: {site.op.source}) at {site.where}: {reason}"
    return None
