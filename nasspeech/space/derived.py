"""Discrete models derived from a genotype, for retraining."""

from __future__ import annotations

from nasspeech.genotype import Genotype, GenotypeError
from nasspeech.space.component import DerivedComponent
from nasspeech.space.config import ComponentConfig, SearchSpace
from nasspeech.space.limits import MAX_CELLS, MAX_CHANNELS, MIN_CNN_CHANNELS, short
from nasspeech.space.network import ComponentChain
from nasspeech.space.size import check_size, derived_size


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


def check_overrides(space: SearchSpace,
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
        lowest = {"channels": MIN_CNN_CHANNELS if cfg.family == "cnn" else 1, "cells": 1}
        highest = {"channels": MAX_CHANNELS, "cells": MAX_CELLS}
        for key, value in o.items():
            if type(value) is not int:  # noqa: E721  (bool is an int subclass: refuse it)
                raise ValueError(f"overrides.{name}.{key} must be an integer, got {short(value)}")
            if not lowest[key] <= value <= highest[key]:
                raise ValueError(f"overrides.{name}.{key} must be in {lowest[key]}.."
                                 f"{highest[key]} for a {cfg.family} component, got {value}")
    return overrides


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

    def set_drop_path(self, prob: float) -> None:
        """Drop-path probability for every derived cell (0 disables it)."""
        if not 0.0 <= prob < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {prob}")
        for comp in self.components.values():
            comp.set_drop_path(prob)
