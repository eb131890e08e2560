"""Discrete models derived from a genotype, for retraining."""

from __future__ import annotations

from nasspeech.genotype import Genotype, GenotypeError
from nasspeech.space.component import DerivedComponent
from nasspeech.space.config import ComponentConfig, SearchSpace
from nasspeech.space.network import ComponentChain


def check_fits(space: SearchSpace, genotype: Genotype) -> None:
    """Raise :class:`GenotypeError` if ``genotype`` was not searched in a space like ``space``."""
    want = [(c.name, c.family) for c in space.components]
    have = [(c.name, c.family) for c in genotype.components]
    if want != have:
        raise GenotypeError(
            f"genotype (space {genotype.space!r}) has components {have}, but space "
            f"{space.name!r} has {want}: it was searched in another space"
        )
    for cfg in space.components:
        kinds = set(genotype.component(cfg.name).cells)
        if kinds != set(cfg.cell_kinds()):
            raise GenotypeError(
                f"genotype component {cfg.name!r} has cells {sorted(kinds)}, the space needs "
                f"{cfg.cell_kinds()}"
            )


class DerivedModel(ComponentChain):
    """The network of a genotype; ``overrides`` change a component's ``channels``/``cells``."""

    def __init__(
        self,
        space: SearchSpace,
        genotype: Genotype,
        overrides: dict[str, dict[str, int]] | None = None,
        drop_path: float = 0.0,
    ) -> None:
        genotype.validate_ops()
        check_fits(space, genotype)
        overrides = dict(overrides or {})
        unknown = set(overrides) - {c.name for c in space.components}
        if unknown:
            raise KeyError(f"overrides name unknown components {sorted(unknown)}")
        bad = {k for o in overrides.values() for k in o} - {"channels", "cells"}
        if bad:
            raise KeyError(f"overrides may change 'channels' and 'cells' only, got {sorted(bad)}")

        def build(cfg: ComponentConfig, in_shape: tuple[int, ...]) -> DerivedComponent:
            o = overrides.get(cfg.name, {})
            return DerivedComponent(
                cfg, in_shape, genotype.component(cfg.name).cells,
                cells=o.get("cells"), channels=o.get("channels"),
            )

        super().__init__(space, build)
        self.genotype = genotype
        self.set_drop_path(drop_path)

    def set_drop_path(self, prob: float) -> None:
        """Drop-path probability for every derived cell (0 disables it)."""
        if not 0.0 <= prob < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {prob}")
        for comp in self.components.values():
            comp.set_drop_path(prob)
