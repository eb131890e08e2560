"""Genotypes: the discrete architecture found by a search, as a versioned pydantic model.

Saved as JSON (never ``eval`` or pickle) and validated against the op registry on load.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nasspeech.registry import REGISTRY, UnknownOpError

SCHEMA_VERSION = 1


class GenotypeError(ValueError):
    """A genotype that cannot be read or does not fit the registry or a search space."""


class Edge(BaseModel):
    """One kept edge: ``op`` applied to node ``source`` (0, 1 = cell inputs, 2.. = nodes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    source: int = Field(ge=0)
    op: str


class CellGenotype(BaseModel):
    """The kept edges of each intermediate node and which nodes the output concatenates."""

    model_config = ConfigDict(extra="forbid")
    nodes: list[list[Edge]]
    concat: list[int]

    @model_validator(mode="after")
    def _check_indices(self) -> CellGenotype:
        for j, edges in enumerate(self.nodes):
            if not edges:
                raise ValueError(f"node {j + 2} has no incoming edge")
            for e in edges:
                if e.source >= j + 2:
                    raise ValueError(
                        f"node {j + 2} takes input from node {e.source}, which is not earlier"
                    )
        n_states = len(self.nodes) + 2
        bad = [i for i in self.concat if not 2 <= i < n_states]
        if bad or not self.concat:
            raise ValueError(f"concat {self.concat} must name intermediate nodes 2..{n_states - 1}")
        return self


class ComponentGenotype(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    family: str
    cells: dict[str, CellGenotype]

    def ops(self) -> list[str]:
        return [e.op for cell in self.cells.values() for node in cell.nodes for e in node]


class Genotype(BaseModel):
    """The architecture of every component of a composed search space."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    space: str | None = None
    components: list[ComponentGenotype]

    @model_validator(mode="after")
    def _check_version(self) -> Genotype:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(
                f"genotype schema version {self.schema_version} is not supported "
                f"(this nasspeech reads version {SCHEMA_VERSION})"
            )
        return self

    def component(self, name: str) -> ComponentGenotype:
        for comp in self.components:
            if comp.name == name:
                return comp
        raise KeyError(f"genotype has no component {name!r}")

    def validate_ops(self) -> Genotype:
        """Check every op against the registry; raises :class:`GenotypeError` naming it."""
        for comp in self.components:
            for kind, cell in comp.cells.items():
                for j, node in enumerate(cell.nodes):
                    for e in node:
                        try:
                            REGISTRY.get(comp.family, e.op)
                        except UnknownOpError as exc:
                            raise GenotypeError(
                                f"genotype component {comp.name!r}, {kind} cell, node {j + 2}: "
                                f"{exc}"
                            ) from None
        return self

    # -- persistence -------------------------------------------------------------------
    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)
        return path

    @classmethod
    def from_json(cls, text: str, origin: str = "genotype") -> Genotype:
        try:
            genotype = cls.model_validate_json(text)
        except ValidationError as exc:
            raise GenotypeError(f"{origin}: not a valid genotype:\n{exc}") from None
        return genotype.validate_ops()

    @classmethod
    def load(cls, path: str | Path) -> Genotype:
        path = Path(path)
        if not path.is_file():
            raise GenotypeError(f"genotype file not found: {path}")
        return cls.from_json(path.read_text(), origin=str(path))

    # -- views -------------------------------------------------------------------------
    def to_networkx(self, component: str, kind: str):
        from nasspeech.genotype.graph import cell_graph

        return cell_graph(self.component(component).cells[kind])

    def plot(self, path: str | Path | None = None, title: str | None = None):
        from nasspeech.genotype.plot import plot_genotype

        return plot_genotype(self, path=path, title=title)
