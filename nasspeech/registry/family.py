"""Op families as an extension point: what a family of candidate ops maps and how its cells
are laid out, in one registered object.

A :class:`Family` carries everything that differs between families: the tensor rank and
layout its ops map, the strides they take, the probe inputs and shape contract the op smoke
test uses, the cell plan (cell kinds, reduction cells, widths), the cell's stem,
preprocessing and output combination, and the default hand-overs to other families. The
built-in ``cnn`` and ``seq`` families are two registrations (:mod:`nasspeech.families`);
a plugin adds a family with :func:`register_family` before registering its ops.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from nasspeech.registry.base import DuplicateNameError, Registry, UnknownNameError, source_of
from nasspeech.registry.context import current_source

__all__ = ["FAMILIES", "FAMILY_LAYOUTS", "CellSlot", "ComponentShape", "Family",
           "UnknownFamilyError", "get_family", "list_families", "register_family"]


class ComponentShape(Protocol):
    """The fields of a component config that fix its cell layout."""

    family: str
    cells: int
    channels: int
    stem_multiplier: int
    reductions: list[int] | None


@dataclass(frozen=True)
class CellSlot:
    """Where one cell sits in a component and the channel widths around it."""

    index: int
    kind: str  # "normal" | "reduce" | "cell"
    c_prev_prev: int
    c_prev: int
    width: int
    reduction_prev: bool


class Family:
    """One op family. Subclass it, set the class attributes, override what differs.

    The defaults describe a family of stride-1 ops over ``(B, *shape)`` tensors with
    channels on ``channel_dim``, laid out as a stack of identical ``cell`` cells.
    """

    #: The family's name (``family:`` in a space, the first part of an op key).
    name: str = ""
    #: Rank of one sample the family's components take (without the batch axis).
    rank: int = 0
    #: The tensor contract of its ops, as shown to users.
    layout: str = ""
    #: Axis of the channels in a batched tensor.
    channel_dim: int = 1
    #: Strides its ops take (a reduction cell runs its first edges at stride 2).
    strides: tuple[int, ...] = (1,)
    #: Fewest channels per mixed op a component of the family may have.
    min_channels: int = 1
    #: Whether DARTS's auxiliary head (an image head) can follow one of its cells.
    auxiliary: bool = False
    #: Default hand-over from this family's output to a family (by name) or ``"head"``.
    handover_to: Mapping[str, str] = {}
    #: Default hand-over into this family from an input of the given rank (no batch axis),
    #: for the space's input and for families whose ``handover_to`` does not name this one.
    handover_from_rank: Mapping[int, str] = {}
    #: Who registered it.
    source: str = "built-in"

    # -- op contract (the smoke test of registered ops) --------------------------------
    def expected_shape(self, shape: tuple[int, ...], stride: int = 1) -> tuple[int, ...]:
        """The output shape an op must produce for an input of ``shape`` (with batch)."""
        return tuple(shape)

    def probe_cases(self, channels: int = 4) -> list[tuple[tuple[int, ...], int]]:
        """(input shape, stride) pairs of the smoke test; batch 5 and batch 1 at least."""
        raise NotImplementedError(f"family {self.name!r} defines no probe inputs")

    def channels_of(self, shape: tuple[int, ...]) -> int:
        """The channel count of a batched input of ``shape``."""
        return shape[self.channel_dim]

    # -- cell plan ---------------------------------------------------------------------
    @property
    def reduces(self) -> bool:
        """Whether components of the family have reduction cells."""
        return 2 in self.strides

    def reduction_cells(self, cfg: ComponentShape) -> list[int]:
        return []

    def cell_kinds(self, cfg: ComponentShape) -> list[str]:
        """The alpha sets (cell kinds) of a component of this family."""
        return ["cell"]

    def cell_plan(self, cfg: ComponentShape, n_concat: int, cells: int, channels: int,
                  ) -> tuple[int, list[CellSlot], int]:
        """Stem width, the cell slots, and the component's output channels."""
        slots = [CellSlot(i, "cell", channels, channels, channels, False) for i in range(cells)]
        return channels, slots, channels

    def output_shape(self, in_shape: tuple[int, ...], slots: list[CellSlot],
                     out_channels: int) -> tuple[int, ...]:
        """One sample's output shape of a component (``in_shape`` without batch)."""
        raise NotImplementedError

    # -- cell modules ------------------------------------------------------------------
    def stem(self, in_shape: tuple[int, ...], width: int) -> nn.Module:
        raise NotImplementedError

    def preprocess(self, c_in: int, c_out: int, reduced_prev: bool) -> nn.Module:
        raise NotImplementedError

    def combine(self, n_concat: int, width: int) -> tuple[nn.Module, int]:
        """Module applied to the concatenated nodes, and the cell's output width."""
        raise NotImplementedError

    def prepare(self, module: nn.Module) -> nn.Module:
        """Put a built component's parameters in the family's preferred memory format."""
        return module

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def keep_grad_layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x``, with its gradient kept in the family's memory layout (identity here)."""
        return x

    def reduce_residual(self, channels: int) -> nn.Module:
        """PC-DARTS: how the channels a mixed op skips follow a stride-2 edge."""
        raise NotImplementedError(f"family {self.name!r} has no stride-2 edges")

    def search_candidate(self, module: nn.Module, tags: tuple[str, ...], width: int
                         ) -> nn.Module:
        """The module a mixed op holds for a candidate op with ``tags`` (e.g. pooling gets a
        BatchNorm in cnn cells)."""
        return module

    def __repr__(self) -> str:
        return f"<family {self.name!r}: {self.layout}>"


class UnknownFamilyError(UnknownNameError):
    """A family name no one registered."""


class _FamilyRegistry(Registry[Family]):
    def unknown_message(self, key: Any) -> str:
        known = ", ".join(sorted(str(k) for k in self.names())) or "none"
        return f"unknown op family {key!r} (known families: {known})"


#: The process-wide family registry.
FAMILIES: Registry[Family] = _FamilyRegistry(
    "op family", plural="op families", unknown_error=UnknownFamilyError,
    duplicate_error=DuplicateNameError)


def register_family(family: Family | type[Family], *, override: bool = False) -> Family:
    """Register ``family`` (an instance, or a class that is instantiated) under its name."""
    if isinstance(family, type):
        family = family()
    if not family.name or not family.name.replace("_", "").isalnum():
        raise ValueError(f"family name {family.name!r} must be a non-empty identifier")
    if family.rank < 1:
        raise ValueError(f"family {family.name!r}: rank must be >= 1, got {family.rank}")
    family.source = current_source() or source_of(type(family))
    return FAMILIES.add(family.name, family, override=override, source=family.source)


def get_family(name: str) -> Family:
    """The registered family ``name``; :class:`UnknownFamilyError` lists the known ones."""
    return FAMILIES.get(name)


def list_families() -> list[Family]:
    """Registered families, sorted by name."""
    return sorted(FAMILIES.list(), key=lambda f: f.name)


class _Layouts(Mapping[str, str]):
    """family name -> the tensor layout its ops map (a live view of :data:`FAMILIES`)."""

    def __getitem__(self, name: str) -> str:
        if name not in FAMILIES:
            raise KeyError(name)
        return FAMILIES.get(name).layout

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(str(n) for n in FAMILIES.names()))

    def __len__(self) -> int:
        return len(FAMILIES)


#: Op families known to the toolkit and the tensor layout their ops map.
FAMILY_LAYOUTS: Mapping[str, str] = _Layouts()
