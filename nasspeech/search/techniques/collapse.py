"""Skip-connect collapse guard (emoDARTS §6.2) and two published remedies.

* detection: the share of parameter-free ops (``Operation.parametric`` False: pooling,
  ``skip_connect``) among the kept edges of each component's derived genotype, reported once
  the component's alphas have left uniform (near-uniform alphas pick ops by noise);
* DARTS+ early stopping (Liang et al., 2019): stop when a cell keeps ``max_skip`` or more
  ``skip_connect`` edges;
* DARTS- auxiliary skip (Chu et al., 2021): ``beta * x`` added to every stride-1 mixed op,
  beta decaying linearly to 0 over the search, so skip_connect need not win to carry signal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nasspeech.genotype import Genotype
from nasspeech.registry import REGISTRY
from nasspeech.space.mixed_op import MixedOp


def parameter_free_share(genotype: Genotype) -> dict[str, float]:
    """Per component: the share of kept edges whose op has no parameters."""
    shares = {}
    for comp in genotype.components:
        ops = comp.ops()
        free = sum(not REGISTRY.get(comp.family, op).parametric for op in ops)
        shares[comp.name] = free / len(ops) if ops else 0.0
    return shares


def skip_counts(genotype: Genotype) -> dict[str, int]:
    """Per component: the largest number of identity edges (``skip_connect``: ops whose
    ``Operation.identity`` is set) kept by one of its cells."""
    return {
        comp.name: max(
            (sum(REGISTRY.get(comp.family, e.op).identity for node in cell.nodes for e in node)
             for cell in comp.cells.values()),
            default=0,
        )
        for comp in genotype.components
    }


def alpha_shift(alphas: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Per component: how far its op weights are from uniform, as the mean over its edges of
    ``max_op |softmax - 1/n| * n`` (0 at uniform; 0.1 = some op 10 % above or below 1/n).

    ``alphas`` maps ``"<component>.<cell kind>"`` to the (edges x ops) softmax, as
    ``Supernet.alpha_softmax()`` returns it."""
    per: dict[str, list[float]] = {}
    for key, weights in alphas.items():
        n = weights.shape[-1]
        shift = (weights.detach().float() - 1.0 / n).abs().amax(dim=-1) * n
        per.setdefault(key.split(".", 1)[0], []).extend(shift.reshape(-1).tolist())
    return {comp: sum(v) / len(v) for comp, v in per.items() if v}


@dataclass
class CollapseReport:
    shares: dict[str, float]
    skips: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    stop: str | None = None
    shifts: dict[str, float] | None = None
    #: the warnings worth printing: a component's first, or one whose share is a new high
    #: (a share flipping between 75 % and 100 % is shown once each, not every epoch)
    new_warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"parameter_free_share": self.shares, "max_skip_per_cell": self.skips,
                "alpha_shift": self.shifts, "warnings": self.warnings, "stop": self.stop}


class CollapseGuard:
    """Checks each epoch's genotype against a :class:`~nasspeech.config.CollapseConfig`."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self._warned: dict[str, float] = {}  # component -> highest share warned about

    def check(self, genotype: Genotype, epoch: int,
              alphas: Mapping[str, torch.Tensor] | None = None) -> CollapseReport:
        """The epoch's report. With ``alphas`` (the softmax per alpha set), a component is
        only warned about once its :func:`alpha_shift` reaches ``min_alpha_shift``."""
        cfg = self.config
        shifts = alpha_shift(alphas) if alphas is not None else None
        report = CollapseReport(parameter_free_share(genotype), skip_counts(genotype),
                                shifts=shifts)
        for name, share in report.shares.items():
            if shifts is not None and shifts.get(name, 0.0) < cfg.min_alpha_shift:
                continue  # near-uniform alphas: the kept ops are still a coin toss
            if share >= cfg.warn_share:
                what = "all kept edges are" if share >= 1.0 else f"{share:.0%} of kept edges are"
                warning = (f"epoch {epoch + 1}: component {name!r} is collapsing: {what} "
                           f"parameter-free ops (warn_share {cfg.warn_share}); consider "
                           "search.collapse.remedy early_stop or aux_skip, fewer cells/nodes")
                report.warnings.append(warning)
                if share > self._warned.get(name, 0.0):
                    self._warned[name] = share
                    report.new_warnings.append(warning)
        if cfg.remedy == "early_stop" and epoch + 1 >= cfg.min_epochs:
            hit = {n: c for n, c in report.skips.items() if c >= cfg.max_skip}
            if hit:
                report.stop = (f"DARTS+ early stop after epoch {epoch + 1}: skip_connect "
                               f"count {hit} reached max_skip {cfg.max_skip}")
        return report


class AuxSkip:
    """DARTS- auxiliary skip: forward hooks adding ``beta * x`` to stride-1 mixed ops."""

    def __init__(self, model: nn.Module, beta0: float) -> None:
        self.beta0 = beta0
        self.beta = beta0
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules()
                        if isinstance(m, MixedOp)]

    def set_epoch(self, epoch: int, epochs: int) -> float:
        self.beta = self.beta0 * (1.0 - epoch / max(1, epochs))
        return self.beta

    def _hook(self, module: nn.Module, args: tuple, out: Any) -> Any:
        x = args[0]
        if self.beta and isinstance(out, torch.Tensor) and out.shape == x.shape:
            return out + self.beta * x
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
