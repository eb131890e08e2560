"""Genotypes: the discrete architecture found by a search, as a versioned pydantic model.

Saved as JSON (never ``eval`` or pickle) and validated against the op registry on load.

**Node numbering** (the same in the JSON, in error messages and in plots): in every cell,
nodes 0 and 1 are the cell's inputs (the outputs of the two previous cells, drawn as
``c_{k-2}`` and ``c_{k-1}``), and the intermediate nodes are 2, 3, ... in order; ``source``
and ``concat`` use these numbers, and ``nodes[j]`` holds the inputs of node ``j + 2``.
"""

from __future__ import annotations

from pathlib import Path

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nasspeech.genotype.cell import CellGenotype, ComponentGenotype, Edge, node_name
from nasspeech.io import atomic_write
from nasspeech.registry import REGISTRY, NasspeechWarning, UnknownOpError
from nasspeech.space.limits import short
from nasspeech.space.loading import ConfigFileError, format_errors, parse_mapping, read_text

if TYPE_CHECKING:
    import networkx as nx
    from matplotlib.figure import Figure

__all__ = ["SCHEMA_VERSION", "CellGenotype", "ComponentGenotype", "Edge", "Genotype",
           "GenotypeError", "GenotypeWarning", "node_name"]

SCHEMA_VERSION = 1


class GenotypeError(ValueError):
    """A genotype that cannot be read or does not fit the registry or a search space."""


class GenotypeWarning(NasspeechWarning):
    """A genotype that is usable but unusual (e.g. an op its space does not search)."""


class Genotype(BaseModel):
    """The architecture of every component of a composed search space."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = Field(default=SCHEMA_VERSION, strict=True)
    space: str | None = None
    components: list[ComponentGenotype] = Field(min_length=1, max_length=16)

    @model_validator(mode="after")
    def _check_version(self) -> Genotype:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(
                f"genotype schema version {self.schema_version} is not supported "
                f"(this nasspeech reads version {SCHEMA_VERSION})"
            )
        names = [c.name for c in self.components]
        if len(set(names)) != len(names):
            raise ValueError(f"component names must be unique, got {short(names)}")
        return self

    def component(self, name: str) -> ComponentGenotype:
        for comp in self.components:
            if comp.name == name:
                return comp
        raise KeyError(f"genotype has no component {name!r}")

    def validate_ops(self) -> Genotype:
        """Check every op against the registry; raises :class:`GenotypeError` naming it.

        A ``none`` edge (no connection) is refused too: it would add zeros; leave it out.
        """
        for comp in self.components:
            for kind, cell in comp.cells.items():
                for j, node in enumerate(cell.nodes):
                    where = f"genotype component {comp.name!r}, {kind} cell, node {j + 2}"
                    for e in node:
                        try:
                            op = REGISTRY.get(comp.family, e.op)
                        except UnknownOpError as exc:
                            raise GenotypeError(f"{where}: {exc}") from None
                        if op.is_zero:
                            raise GenotypeError(
                                f"{where}: the edge from {node_name(e.source)} is {e.op!r} (no "
                                "connection); remove the edge instead")
        return self

    # -- persistence -------------------------------------------------------------------
    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def save(self, path: str | Path) -> Path:
        """Write the JSON atomically (a crash never leaves half a genotype)."""
        return atomic_write(path, self.to_json())

    @classmethod
    def from_json(cls, text: str, origin: str = "genotype") -> Genotype:
        try:
            genotype = cls.model_validate(parse_mapping(text, origin, "JSON"))
        except ConfigFileError as exc:
            raise GenotypeError(str(exc)) from None
        except ValidationError as exc:
            raise GenotypeError(f"{origin}: not a valid genotype:\n{format_errors(exc)}") from None
        return genotype.validate_ops()

    @classmethod
    def load(cls, path: str | Path) -> Genotype:
        try:
            text = read_text(path, "genotype file")
        except (FileNotFoundError, ConfigFileError) as exc:
            raise GenotypeError(str(exc)) from None
        return cls.from_json(text, origin=str(path))

    # -- views -------------------------------------------------------------------------
    def to_networkx(self, component: str, kind: str) -> nx.DiGraph:
        from nasspeech.genotype.graph import cell_graph

        return cell_graph(self.component(component).cells[kind])

    def plot(self, path: str | Path | None = None, title: str | None = None) -> Figure:
        from nasspeech.genotype.plot import plot_genotype

        return plot_genotype(self, path=path, title=title)
