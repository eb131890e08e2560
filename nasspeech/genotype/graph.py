"""Cell genotypes as networkx graphs, with the genotype's node numbers (see
:mod:`nasspeech.genotype.model`): inputs ``c_{k-2}`` (node 0) and ``c_{k-1}`` (node 1),
intermediate nodes ``"2"``, ``"3"``, ..., and the output ``c_{k}``."""

from __future__ import annotations

import networkx as nx

from nasspeech.genotype.cell import CellGenotype


def node_label(index: int) -> str:
    """The graph node of genotype node ``index``: the same number, or the input's name."""
    return {0: "c_{k-2}", 1: "c_{k-1}"}.get(index, str(index))


def cell_graph(cell: CellGenotype) -> nx.DiGraph:
    """A DiGraph with nodes ``c_{k-2}``, ``c_{k-1}``, ``2``.., ``c_{k}`` and op names on edges
    (each node has its genotype number as attribute ``index``; the output has none)."""
    g = nx.DiGraph()
    g.add_node(node_label(0), kind="input", index=0)
    g.add_node(node_label(1), kind="input", index=1)
    for j, edges in enumerate(cell.nodes):
        target = node_label(j + 2)
        g.add_node(target, kind="intermediate", index=j + 2)
        for e in edges:
            g.add_edge(node_label(e.source), target, op=e.op)
    g.add_node("c_{k}", kind="output")
    for i in cell.concat:
        g.add_edge(node_label(i), "c_{k}", op="concat")
    return g
