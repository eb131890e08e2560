"""Where the cells of a component sit: their kinds and channel widths, and the output shape.

Search and derived components lay out their cells with :func:`cell_plan`, so a genotype
derives the network it was searched in; :mod:`nasspeech.space.size` counts with it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class ComponentShape(Protocol):
    """The fields of a component config that fix its cell layout."""

    family: str
    cells: int
    channels: int
    stem_multiplier: int

    def reduction_cells(self) -> list[int]: ...


@dataclass(frozen=True)
class CellSlot:
    """Where one cell sits in a component and the channel widths around it."""

    index: int
    kind: str  # "normal" | "reduce" | "cell"
    c_prev_prev: int
    c_prev: int
    width: int
    reduction_prev: bool


def cell_plan(
    cfg: ComponentShape, n_concat: int, cells: int | None = None, channels: int | None = None
) -> tuple[int, list[CellSlot], int]:
    """Stem width, the cell slots, and the component's output channels."""
    cells = cfg.cells if cells is None else cells
    channels = cfg.channels if channels is None else channels
    if cfg.family == "cnn":
        reductions = (
            cfg.reduction_cells() if cells == cfg.cells else sorted({cells // 3, 2 * cells // 3})
        )
        stem = cfg.stem_multiplier * channels
        c_pp, c_p, width = stem, stem, channels
        slots, reduced_prev = [], False
        for i in range(cells):
            reduce = i in reductions
            if reduce:
                width *= 2
            slots.append(CellSlot(i, "reduce" if reduce else "normal", c_pp, c_p, width, reduced_prev))
            c_pp, c_p, reduced_prev = c_p, n_concat * width, reduce
        return stem, slots, c_p
    slots = [CellSlot(i, "cell", channels, channels, channels, False) for i in range(cells)]
    return channels, slots, channels


def output_shape(cfg: ComponentShape, in_shape: tuple[int, ...], slots: list[CellSlot],
                 out_channels: int) -> tuple[int, ...]:
    if cfg.family == "cnn":
        _, h, w = in_shape
        for slot in slots:
            if slot.kind == "reduce":
                h, w = -(-h // 2), -(-w // 2)
        return (out_channels, h, w)
    return (in_shape[0], out_channels)
