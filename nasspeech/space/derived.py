"""Discrete models derived from a genotype, for retraining."""

from __future__ import annotations

import torch

from nasspeech.genotype import (
    CellGenotype,
    ComponentGenotype,
    Edge,
    Genotype,
    GenotypeError,
    GenotypeWarning,
)
from nasspeech.registry import get_family, get_op, warn_once
from nasspeech.space.auxiliary import MIN_SIZE as AUX_MIN_SIZE
from nasspeech.space.auxiliary import AuxiliaryHead
from nasspeech.space.component import DerivedComponent
from nasspeech.space.component_chain import ComponentChain
from nasspeech.space.component_config import ComponentConfig, SpaceSpec
from nasspeech.space.limits import MAX_CELLS, MAX_CHANNELS, short
from nasspeech.space.size import check_size, derived_size


def check_fits(space: SpaceSpec, genotype: Genotype) -> None:
    """Raise :class:`GenotypeError` if ``genotype`` cannot come from a search in ``space``.

    Refused: other components, cell kinds or node counts, and a node with more inputs than
    the component's ``top_k``. Warned about (:class:`GenotypeWarning`, once per process): an
    op that is not among the component's ``ops``, a node nothing reads, another space name.
    """
    want = [(c.name, c.family) for c in space.components]
    have = [(c.name, c.family) for c in genotype.components]
    if want != have:
        raise GenotypeError(
            f"genotype (space {genotype.space!r}) has components {short(have)}, but space "
            f"{space.name!r} has {short(want)}: it was searched in another space"
        )
    for cfg in space.components:
        comp = genotype.component(cfg.name)
        kinds = set(comp.cells)
        if kinds != set(cfg.cell_kinds()):
            raise GenotypeError(
                f"genotype component {cfg.name!r} has cells {short(sorted(kinds))}, the space "
                f"needs {cfg.cell_kinds()}"
            )
        for kind, cell in comp.cells.items():
            where = f"genotype component {cfg.name!r}, {kind} cell"
            if len(cell.nodes) != cfg.nodes:
                raise GenotypeError(
                    f"{where} has {len(cell.nodes)} nodes, but the space's component has "
                    f"nodes: {cfg.nodes} (was it searched in another space?)")
            for j, node in enumerate(cell.nodes):
                if len(node) > cfg.top_k:
                    raise GenotypeError(
                        f"{where}, node {j + 2} has {len(node)} inputs, more than the "
                        f"component's top_k: {cfg.top_k}")
        concat = {kind: len(cell.concat) for kind, cell in comp.cells.items()}
        if len(set(concat.values())) > 1:
            raise GenotypeError(f"genotype component {cfg.name!r}: its cells must concatenate "
                                f"the same number of nodes, got {concat}")
    for cfg in space.components:  # usable, but unusual: say so
        for kind, cell in genotype.component(cfg.name).cells.items():
            where = f"genotype component {cfg.name!r}, {kind} cell"
            for j, node in enumerate(cell.nodes):
                for e in node:
                    if e.op not in cfg.ops:
                        warn_once(f"{where}, node {j + 2} uses {e.op!r}, which is not among the "
                                  f"component's ops; training it anyway", GenotypeWarning)
            for i in cell.unused_nodes():
                warn_once(f"{where}: node {i} is computed but unused (no later node reads it "
                          "and concat leaves it out)", GenotypeWarning)
    if genotype.space is not None and genotype.space != space.name:
        warn_once(f"the genotype was searched in space {genotype.space!r}, not in "
                  f"{space.name!r} (their components match; training it anyway)",
                  GenotypeWarning)


def check_overrides(space: SpaceSpec,
                    overrides: dict[str, dict[str, int]] | None) -> dict[str, dict[str, int]]:
    """``overrides`` if every value is a sensible ``channels``/``cells`` of a known component.

    Unknown components or fields raise ``KeyError``, bad values ``ValueError``; both name
    ``overrides.COMPONENT.FIELD``.
    """
    overrides = {name: dict(o) for name, o in (overrides or {}).items()}
    unknown = set(overrides) - {c.name for c in space.components}
    if unknown:
        raise KeyError(f"overrides name unknown components {sorted(unknown)}")
    bad = {k for o in overrides.values() for k in o} - {"channels", "cells"}
    if bad:
        raise KeyError(f"overrides may change 'channels' and 'cells' only, got {sorted(bad)}")
    for name, o in overrides.items():
        cfg = space.component(name)
        lowest = {"channels": get_family(cfg.family).min_channels, "cells": 1}
        highest = {"channels": MAX_CHANNELS, "cells": MAX_CELLS}
        for key, value in o.items():
            if type(value) is not int:  # bool is an int subclass: refuse it
                raise ValueError(f"overrides.{name}.{key} must be an integer, got {short(value)}")
            if not lowest[key] <= value <= highest[key]:
                raise ValueError(f"overrides.{name}.{key} must be in {lowest[key]}.."
                                 f"{highest[key]} for a {cfg.family} component, got {value}")
    return overrides


def check_auxiliary(space: SpaceSpec, overrides: dict[str, dict[str, int]] | None = None
                    ) -> None:
    """Raise ``ValueError`` if DARTS's auxiliary head has no place in the models ``space``
    derives (with ``overrides``; see :meth:`DerivedModel.attach_auxiliary`). The place depends
    on the cells and reductions, not on the ops, so any genotype shows it: one built from the
    space is derived on the meta device (nothing is allocated)."""
    components = []
    for cfg in space.components:
        op = next(name for name in cfg.ops if not get_op(cfg.family, name).is_zero)
        cell = CellGenotype(nodes=[[Edge(source=0, op=op)] for _ in range(cfg.nodes)],
                            concat=list(range(2, 2 + cfg.nodes)))
        components.append(ComponentGenotype(name=cfg.name, family=cfg.family,
                                            cells={kind: cell for kind in cfg.cell_kinds()}))
    with torch.device("meta"):
        try:
            model = DerivedModel(space, Genotype(space=space.name, components=components),
                                 overrides)
        except (KeyError, ValueError):
            return  # bad overrides or sizes: building the real model reports them
        model.attach_auxiliary()


class DerivedModel(ComponentChain):
    """The network of a genotype; ``overrides`` change a component's ``channels``/``cells``.

    ``auxiliary=True`` adds DARTS's auxiliary head (:class:`AuxiliaryHead`) after cell
    ``2 * cells // 3`` of the first cnn component: in training mode every forward pass leaves
    its logits in ``model.aux_logits`` (``None`` in eval mode), for a weighted extra loss. The
    forward pass returns the main logits either way; :meth:`remove_auxiliary` drops the head
    (the model as tested and exported).
    """

    def __init__(
        self,
        space: SpaceSpec,
        genotype: Genotype,
        overrides: dict[str, dict[str, int]] | None = None,
        drop_path: float = 0.0,
        auxiliary: bool = False,
    ) -> None:
        genotype.validate_ops()
        check_fits(space, genotype)
        overrides = check_overrides(space, overrides)
        size = derived_size(space.components, space.input_shape, space.classifier.hidden,
                            space.num_classes, genotype, overrides)
        check_size(size, space.components, "the derived model", overrides)

        def build(cfg: ComponentConfig, in_shape: tuple[int, ...]) -> DerivedComponent:
            o = overrides.get(cfg.name, {})
            return DerivedComponent(
                cfg, in_shape, genotype.component(cfg.name).cells,
                cells=o.get("cells"), channels=o.get("channels"),
            )

        super().__init__(space, build)
        self.genotype = genotype
        self.set_drop_path(drop_path)
        self.auxiliary: AuxiliaryHead | None = None
        self.aux_logits: torch.Tensor | None = None
        self._aux_hook: torch.utils.hooks.RemovableHandle | None = None
        if auxiliary:
            self.attach_auxiliary()

    def attach_auxiliary(self) -> None:
        """Add the auxiliary head; ``ValueError`` if the space has no cnn component or its
        maps are below :data:`AUX_MIN_SIZE` at the head's cell."""
        if self.auxiliary is not None:
            return
        comp = next((c for c in self.components.values() if c.layout.auxiliary), None)
        if comp is None:
            raise ValueError("the auxiliary head needs a cnn component; this space has none")
        index = 2 * len(comp.cells) // 3
        h, w = comp.in_shape[1:]
        for cell in list(comp.cells)[: index + 1]:
            if cell.reduction:
                h, w = -(-h // 2), -(-w // 2)
        if min(h, w) < AUX_MIN_SIZE:
            raise ValueError(
                f"the auxiliary head after cell {index} of component {comp.cfg.name!r} needs "
                f"feature maps of at least {AUX_MIN_SIZE}x{AUX_MIN_SIZE}, they are {h}x{w}")
        cell = comp.cells[index]
        self.auxiliary = AuxiliaryHead(cell.out_channels, self.space.num_classes)
        self._aux_hook = cell.register_forward_hook(self._auxiliary_hook)

    def remove_auxiliary(self) -> None:
        """Drop the auxiliary head and its hook (its parameters leave ``state_dict``)."""
        if self._aux_hook is not None:
            self._aux_hook.remove()
        self.auxiliary, self._aux_hook, self.aux_logits = None, None, None

    def _auxiliary_hook(self, module: torch.nn.Module, args: object, out: torch.Tensor) -> None:
        self.aux_logits = self.auxiliary(out) if self.training else None

    def set_drop_path(self, prob: float) -> None:
        """Drop-path probability for every derived cell (0 disables it)."""
        if not 0.0 <= prob < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {prob}")
        for comp in self.components.values():
            comp.set_drop_path(prob)
