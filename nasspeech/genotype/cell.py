"""The parts of a genotype: kept edges, cells and components (see :mod:`nasspeech.genotype.model`
for the node numbering)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nasspeech.space.limits import MAX_NODES, short

__all__ = ["CellGenotype", "ComponentGenotype", "Edge", "node_name"]


def node_name(index: int) -> str:
    """``node 3``, or for the cell inputs ``node 0 (c_{k-2})`` / ``node 1 (c_{k-1})``."""
    inputs = {0: " (c_{k-2})", 1: " (c_{k-1})"}
    return f"node {index}{inputs.get(index, '')}"


class Edge(BaseModel):
    """One kept edge: ``op`` applied to node ``source`` (0, 1 = cell inputs, 2.. = nodes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    source: int = Field(ge=0, strict=True)
    op: str


class CellGenotype(BaseModel):
    """The kept edges of each intermediate node and which nodes the output concatenates."""

    model_config = ConfigDict(extra="forbid")
    nodes: list[list[Edge]] = Field(min_length=1, max_length=MAX_NODES)
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
            twice = sorted({(e.source, e.op) for e in edges if edges.count(e) > 1})
            if twice:
                source, op = twice[0]
                raise ValueError(f"node {j + 2} has the edge {op!r} from {node_name(source)} "
                                 "twice")
        n_states = len(self.nodes) + 2
        bad = [i for i in self.concat if not 2 <= i < n_states]
        if bad or not self.concat:
            raise ValueError(f"concat {short(self.concat)} must name intermediate nodes "
                             f"2..{n_states - 1}")
        twice = sorted({i for i in self.concat if self.concat.count(i) > 1})
        if twice:
            raise ValueError(f"concat lists node {twice[0]} twice: {short(self.concat)}")
        return self

    def unused_nodes(self) -> list[int]:
        """Intermediate nodes that no later node reads and the output does not concatenate."""
        read = {e.source for edges in self.nodes for e in edges} | set(self.concat)
        return [i for i in range(2, len(self.nodes) + 2) if i not in read]


class ComponentGenotype(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    family: str
    cells: dict[str, CellGenotype] = Field(min_length=1)

    def ops(self) -> list[str]:
        return [e.op for cell in self.cells.values() for node in cell.nodes for e in node]
