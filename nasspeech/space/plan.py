"""Where the cells of a component sit: their kinds and channel widths, and the output shape.

Search and derived components lay out their cells with :func:`cell_plan`, so a genotype
derives the network it was searched in; :mod:`nasspeech.space.size` counts with it too.
The plan itself is the family's (:meth:`~nasspeech.registry.Family.cell_plan`).
"""

from __future__ import annotations

from nasspeech.registry.family import CellSlot, ComponentShape, get_family

__all__ = ["CellSlot", "ComponentShape", "cell_plan", "output_shape"]


def cell_plan(
    cfg: ComponentShape, n_concat: int, cells: int | None = None, channels: int | None = None
) -> tuple[int, list[CellSlot], int]:
    """Stem width, the cell slots, and the component's output channels."""
    cells = cfg.cells if cells is None else cells
    channels = cfg.channels if channels is None else channels
    return get_family(cfg.family).cell_plan(cfg, n_concat, cells, channels)


def output_shape(cfg: ComponentShape, in_shape: tuple[int, ...], slots: list[CellSlot],
                 out_channels: int) -> tuple[int, ...]:
    return get_family(cfg.family).output_shape(tuple(in_shape), slots, out_channels)
